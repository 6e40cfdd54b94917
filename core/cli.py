"""`python -m core VERB`: train, list, show, promote, history, compare, predict, serve, ...

Every verb takes `--json` (one JSON document on stdout); otherwise it prints a readable
table. Messages and progress go to stderr. Exit codes: 0 success, 2 bad input, 1 other.
Each verb imports what it needs when it runs, so `--help`, `list` and `show` start fast
(no scikit-learn, pandas or scipy).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.config import DEFAULT_MODEL, SAMPLE_DATA
from core.errors import AltruismError, BadInput
from core.operating_point import DEFAULT_POLICY, POLICY_HELP

if TYPE_CHECKING:
    from core.registry import Registry
    from core.schema import ModelVersion

Handler = Callable[[argparse.Namespace], Any]
RECIPE_NAMES = ("nb-bow", "tfidf-logreg", "tfidf-meta-logreg")  # for --help; checked in core


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def open_registry() -> Registry:
    """The registry from REGISTRY_URL, with builds that can never finish marked failed
    (the build machinery is imported only when there is something to clean up)."""
    from core.reconcile import adopter
    from core.registry import Registry

    registry = Registry()
    orphans = registry.mark_orphans(adopter(registry))
    if orphans:
        from core.builds import clean_after_orphans

        clean_after_orphans(registry, orphans)
    for row in orphans:
        say(f"version {row.version}: {row.error}")
    return registry


def _store() -> Any:
    from core.artifacts import open_store

    return open_store()


def _as_dict(registry: Registry, row: ModelVersion) -> dict[str, Any]:
    from core.registry import version_dict

    return version_dict(row, registry.aliases_by_version(row.model.name).get(row.id, []))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


LIST_HEADERS = [
    "version",
    "status",
    "recipe",
    "roc_auc",
    "fpr",
    "fnr",
    "threshold",
    "evaluated",
    "builder",
    "data",
    "aliases",
    "flags",
]


def _version_row(v: dict[str, Any]) -> list[Any]:
    m = v.get("metrics") or {}
    return [
        v["version"],
        v["status"] + (" (archived)" if v.get("archived") else ""),
        v["recipe"],
        m.get("roc_auc"),
        m.get("fpr"),
        m.get("fnr"),
        _operating_point(v),
        v.get("evaluated", ""),
        v["builder"],
        v.get("data_name") or (v.get("data_sha256") or "")[:10],
        ",".join(v.get("aliases") or []),
        ",".join(v.get("flags") or []),
    ]


def _operating_point(v: dict[str, Any]) -> str:
    """`0.27 (f1)`: the threshold and its policy; only the policy until a build sets it."""
    policy = v.get("threshold_policy") or ""
    if v.get("status") in ("queued", "running") and not policy.startswith("fixed"):
        return policy
    return f"{v.get('threshold', 0.5):.3g} ({policy.replace(' (before operating points)', '*')})"


def _version_rows(versions: Iterable[dict[str, Any]]) -> str:
    return table(
        [*LIST_HEADERS, "created"],
        [[*_version_row(v), (v.get("created_at") or "")[:19]] for v in versions],
    )


def _parse_params(pairs: list[str], option: str = "--param") -> dict[str, str]:
    params = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"{option} takes KEY=VALUE, got {pair!r}")
        params[key.strip()] = value
    return params


# --- verbs -----------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> Any:
    from core import builds

    if args.grid:
        return _sweep(args)
    spare = _spare_worker(args)  # imports the ML stack while this process checks the data
    try:
        registry = open_registry()
        request = _train_request(args)
        store = _store()
        keep_now = args.detach or not store.remote  # else stored while the worker trains
        with builds.submitting(request, registry, store, keep_dataset_now=keep_now) as (
            submission,
            canonical,
        ):
            local_dataset = None if keep_now else canonical
            return _build(args, registry, store, submission, local_dataset, spare)
    finally:
        if spare is not None:
            spare.discard()


def _train_request(args: argparse.Namespace) -> Any:
    from core import builds

    return builds.TrainRequest(
        recipe=args.recipe,
        params=_parse_params(args.param),
        data_path=args.data,
        seed=args.seed,
        test_size=args.test_size,
        threshold_policy=_threshold_policy(args),
        model=args.model,
        backend=args.backend,
        force=args.force,
        timeout_s=args.timeout,
        memory=args.memory,
        cpus=args.cpus,
        cv_folds=args.cv,
        cv_repeats=args.cv_repeats,
    )


def _threshold_policy(args: argparse.Namespace) -> str:
    """--threshold-policy, or --threshold T as a short form of fixed:T (not both)."""
    if args.threshold is None:
        return args.threshold_policy or DEFAULT_POLICY
    if args.threshold_policy is not None:
        raise BadInput("give --threshold-policy or --threshold (= fixed:T), not both")
    if not 0 < args.threshold < 1:
        raise BadInput(f"threshold must be between 0 and 1 (exclusive), got {args.threshold:g}")
    return f"fixed:{args.threshold!r}"


def _sweep(args: argparse.Namespace) -> Any:
    """train --grid: one build per combination, tagged with one sweep id."""
    from core import sweeps

    registry = open_registry()
    grid = sweeps.parse_grid(args.grid)
    sweep = sweeps.submit_sweep(_train_request(args), grid, registry)
    fresh = [s for s in sweep.submissions if not s.reused]
    parallel = sweeps.parallel_for(sweep.submissions[0].builder, len(fresh))
    say(
        f"{sweep.sweep_id}: {len(sweep.submissions)} builds "
        f"({len(sweep.submissions) - len(fresh)} already built), {parallel} at a time"
    )
    if args.detach:
        pid = sweeps.launch_sweep(sweep, registry)
        say(f"{sweep.sweep_id}: building in the background (pid {pid})")
        rows = [registry.get_by_id(i) for i in sweep.version_ids]
    else:
        echo = None if args.quiet else say
        rows = sweeps.run_versions(sweep.version_ids, registry, parallel=parallel, echo=echo)
    out = {
        "sweep": sweep.sweep_id,
        "builds": len(rows),
        "versions": [
            _as_dict(registry, row) | {"reused": submission.reused}
            for row, submission in zip(rows, sweep.submissions, strict=True)
        ],
    }
    failed = [r for r in rows if r.status not in ("ready", "queued", "running")]
    return (out, 1) if failed else out


def render_sweep(out: dict[str, Any]) -> str:
    return f"{out['sweep']}\n" + _version_rows(out["versions"])


def cmd_run_sweep(args: argparse.Namespace) -> Any:
    """Internal: run a detached sweep's queued versions, MAX_PARALLEL_BUILDS at a time."""
    from core import builds, sweeps
    from core.registry import Registry

    builds.lower_priority()
    rows = sweeps.run_versions(args.ids, Registry())
    code = 0 if all(r.status == "ready" for r in rows) else 1
    return None, code


def _spare_worker(args: argparse.Namespace) -> Any:
    """A worker started now for a build that will run here on the local builder."""
    if args.backend != "local" or args.detach:
        return None
    from core.builders.local import SpareWorker

    return SpareWorker()


def cmd_refit(args: argparse.Namespace) -> Any:
    from core import builds

    registry = open_registry()
    store = _store()
    parent = registry.resolve(args.version, args.model)
    submission = builds.submit_refit(parent, registry, store, backend=args.backend)
    return _build(args, registry, store, submission)


def _build(
    args: argparse.Namespace,
    registry: Any,
    store: Any,
    submission: Any,
    local_dataset: Path | None = None,
    spare: Any = None,
) -> Any:
    """Report a submission, then run it here, launch it (--detach) or return the reused one.
    `local_dataset`: the canonical dataset, not yet in the store (`builds.execute`); `spare`:
    a local worker already started."""
    from core import builds

    say(f"builder: {submission.builder} ({submission.builder_reason})")
    row = submission.version
    if submission.reused:
        state = "already built" if row.status == "ready" else f"already {row.status}"
        say(
            f"version {row.version} was {state} from the same recipe, parameters, data, "
            "split, code and packages; returning it (use --force to build again)"
        )
    elif args.detach:
        pid = builds.launch(row.id, registry)
        say(f"version {row.version} queued; building in the background (pid {pid})")
    else:
        say(f"version {row.version}: training {row.recipe} on {submission.rows} requests ...")
        echo = None if args.quiet else _progress()
        builder = None
        if spare is not None and submission.builder == "local":
            from core.builders.local import LocalBuilder

            builder = LocalBuilder(spare)
        row = builds.execute(
            row.id, registry, store, echo=echo, builder=builder, local_dataset=local_dataset
        )
    row = registry.get_by_id(row.id)
    out = _as_dict(registry, row) | {"reused": submission.reused}
    if row.status not in ("ready", "queued", "running"):
        say(f"version {row.version} {row.status}: {row.error}")
        return out, 1
    return out


def _progress() -> Callable[[str], None]:
    started = time.monotonic()

    def echo(line: str) -> None:
        say(f"  [{time.monotonic() - started:6.1f}s] {line}")

    return echo


def render_train(out: dict[str, Any]) -> str:
    return render_sweep(out) if "sweep" in out else _version_rows([out])


def cmd_run_build(args: argparse.Namespace) -> Any:
    """Internal: run a queued version (used by detached builds)."""
    from core import builds
    from core.registry import Registry, version_dict

    builds.lower_priority()
    registry = Registry()
    row = builds.execute(args.id, registry, echo=None if args.quiet else print)
    code = 0 if row.status == "ready" else 1
    return (None if args.quiet else version_dict(row)), code


def cmd_reconcile(args: argparse.Namespace) -> Any:
    """Adopt swarm builds whose launcher is gone and see them to their end."""
    from core import builds
    from core.reconcile import reconcile
    from core.registry import Registry, version_dict

    builds.lower_priority()
    registry = Registry()
    echo = None if args.quiet else say
    rows = reconcile(registry, echo=echo, version_ids=[args.id] if args.id else None)
    code = 0 if all(row.status == "ready" for row in rows) else 1
    return (None if args.quiet else [version_dict(row) for row in rows]), code


def cmd_list(args: argparse.Namespace) -> Any:
    registry = open_registry()
    rows = registry.list_rows(
        args.model,
        include_archived=args.all,
        status=args.status,
        recipe=args.recipe,
        alias=args.alias,
        tag=args.tag,
        limit=args.limit,
        offset=args.offset,
        full=args.full,
        raw_metrics=args.json,
    )
    return Streamed(rows)


def _row_json(row: dict[str, Any], encode: Callable[[Any], str]) -> str:
    """One row as JSON; metrics that are already JSON text (`RawJSON`) go in unchanged."""
    from core.registry.versions import RawJSON

    metrics = row.get("metrics")
    if type(metrics) is not RawJSON:
        return encode(row)
    rest = dict(row)
    del rest["metrics"]
    return f'{encode(rest)[:-1]}, "metrics": {metrics}}}'


class Streamed:
    """Rows produced while they are printed (a JSON list, or a table when not --json)."""

    def __init__(self, rows: Iterable[dict[str, Any]]) -> None:
        self.rows = rows

    def write_json(self) -> None:
        out = sys.stdout
        encode = json.JSONEncoder(default=str).encode  # one encoder for every row
        out.write("[")
        for index, row in enumerate(self.rows):
            out.write(("," if index else "") + "\n  " + _row_json(row, encode))
        out.write("\n]\n")

    def render(self) -> str:
        return _version_rows(self.rows)


def cmd_show(args: argparse.Namespace) -> Any:
    registry = open_registry()
    out = _as_dict(registry, registry.resolve(args.version, args.model))
    out["log_tail"] = registry.log_tail(out["id"]) or out["log_tail"]
    out["changes"] = registry.changes(out["id"])
    return out


def _flag_warnings(v: dict[str, Any]) -> list[str]:
    from core.operating_point import flag_warning

    warning = flag_warning(v["version"], v.get("metrics")) if v.get("flags") else None
    return [warning] if warning else []


def render_show(v: dict[str, Any]) -> str:
    lines = [_version_rows([v]), "", f"params:     {json.dumps(v['params'])}"]
    parent = (v.get("provenance") or {}).get("refit_of")
    lines.append(
        f"evaluated:  {v['evaluated']}"
        + (
            f": the split, confusion matrix and metrics below are v{parent['version']}'s, "
            "measured before the refit (it has no held-out requests of its own)"
            if isinstance(parent, dict)
            else ""
        )
    )
    if v["metrics"]:
        cm = v["metrics"]["confusion_matrix"]
        lines.append(
            f"confusion:  tn {cm['tn']}  fp {cm['fp']}  fn {cm['fn']}  tp {cm['tp']} "
            f"(threshold {v['threshold']:g}, policy {v['threshold_policy']})"
        )
    lines += [f"warning:    {w}" for w in _flag_warnings(v)]
    lines.append(f"data:       {v.get('data_name')} ({v.get('data_kind')}) {v['data_sha256']}")
    lines.append(f"created by: {v.get('created_by') or 'unknown'}")
    if v.get("archived_by"):
        verb = "archived" if v.get("archived") else "restored"
        lines.append(f"{verb} by: {v['archived_by']} at {(v.get('archived_at') or '')[:19]}")
    if v.get("imported"):
        lines.append("imported:   yes (from an archive; never reused for a train request)")
    prov = v["provenance"] or {}
    for key in ("split", "git", "python", "packages", "code_fingerprint", "docker", "swarm"):
        if key in prov:
            lines.append(f"{key + ':':<12}{json.dumps(prov[key])}")
    if v["artifact_sha256"]:
        lines.append(f"artifact:   {v['artifact_sha256']} ({v['artifact_size']:,} bytes)")
    for change in v.get("changes") or []:
        detail = f" {change['detail']}" if change.get("detail") else ""
        lines.append(
            f"changed:    {(change['at'] or '')[:19]} {change['action']}{detail}"
            f" by {change['actor'] or 'unknown'}"
        )
    if v["error"]:
        lines += [f"error:      {v['error']}", "log tail:", v["log_tail"] or ""]
    return "\n".join(lines)


def cmd_promote(args: argparse.Namespace) -> Any:
    registry = open_registry()
    row = registry.promote(args.version, args.alias, args.model)
    say(f"{args.alias} -> version {row.version}")
    return _as_dict(registry, registry.get_by_id(row.id))


def cmd_history(args: argparse.Namespace) -> Any:
    registry = open_registry()
    return registry.alias_history(args.alias, args.model)


def render_history(spans: list[dict[str, Any]]) -> str:
    if not spans:
        return "(this alias was never set)"
    return table(
        ["version", "from", "until", "set by", "ended by"],
        [
            [
                s["version"],
                (s["from"] or "")[:19],
                (s["until"] or "now")[:19],
                f"{s['set_by'] or 'unknown'} ({s['how']})",
                f"{s['ended_by'] or 'unknown'} ({s['ended_how']})" if s["until"] else "",
            ]
            for s in spans
        ],
    )


def cmd_cancel(args: argparse.Namespace) -> Any:
    registry = open_registry()
    row = registry.request_cancel(registry.resolve(args.version, args.model).id)
    return _as_dict(registry, row)


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not text.strip().isascii() or not text.strip().lstrip("-").isdigit():
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:,} and {high:,}")
        return value

    return parse


def _ascii_float(text: str) -> float:
    if not text.strip().isascii():
        raise argparse.ArgumentTypeError(f"{text!r} is not a number")
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def cmd_compare(args: argparse.Namespace) -> Any:
    from core import compare
    from core.operating_point import parse_at

    registry = open_registry()
    point = parse_at(args.at)
    rows = [registry.resolve(ref, args.model) for ref in args.versions]
    result = compare.compare(rows, registry, n_resamples=args.resamples, at=point)
    if not result["paired"]:
        raise BadInput(
            f"refused: not comparable: {result['reason']}; train both with the same data, "
            "seed and evaluation (test size, or --cv folds and repeats)"
        )
    return result


def _delta(value: Any) -> str:
    """A difference with its sign always shown (+0.0685, −0.0123, +3); '-' when undefined."""
    if value is None:
        return "-"
    return f"{value:+d}" if isinstance(value, int) else f"{value:+.4f}".replace("-", "−")


def render_compare(result: dict[str, Any]) -> str:
    headers = [
        "metric",
        *(f"v{n}" for n in result["versions"]),
        *(f"Δ v{n}" for n in result["versions"][1:]),
    ]
    rows = [
        [m["metric"], *m["values"], *(_delta(d) for d in m["deltas"][1:])]
        for m in result["metrics"]
    ]
    point = result["operating_point"]
    lines = [f"at {point['label']}:", table(headers, rows), ""]
    lines += [
        f"v{e['version']}: {e['label']}; threshold {t['threshold_label']}"
        for e, t in zip(result["evaluations"], point["versions"], strict=True)
    ]
    lines += result["warnings"]
    for p in result["paired"]:
        lines.append(f"{p['verdict']} ({p['bootstrap_resamples']} paired bootstrap resamples)")
    if result["not_comparable"]:
        pairs = ", ".join(f"v{p['first']}/v{p['second']}" for p in result["not_comparable"])
        lines.append(f"not comparable (different test sets, or a refit and its parent): {pairs}")
    lines += result["notes"]
    differs = [d["field"] for d in result["provenance_diff"] if d["differs"]]
    lines.append(f"provenance differs in: {', '.join(differs) or 'nothing'}")
    return "\n".join(lines)


def cmd_predict(args: argparse.Namespace) -> Any:
    from core import predict
    from core.dataset import read_records

    registry = open_registry()
    row = registry.resolve(args.version, args.model)
    if args.file:
        if args.time or args.meta:
            raise BadInput("--time and --meta apply to --title/--text; put them in the file")
        records = predict.prepare_requests(read_records(Path(args.file)))
    elif args.title is not None or args.text is not None:
        when = predict.parse_request_time(args.time) if args.time else None
        meta = predict.request_meta(when, _meta_numbers(args.meta))
        records = [predict.make_request(args.title or "", args.text or "", **meta)]
    else:
        raise BadInput("give --title/--text or --file")
    model = predict.load_model(row, _store())
    predictions = predict.score(model, records)
    for record, prediction in zip(records, predictions, strict=True):
        prediction |= predict.decision(row, prediction["probability"])
        if args.explain:
            from core.explain import explain

            prediction["explanation"] = explain(model, record)
    return {"version": row.version, "recipe": row.recipe, "predictions": predictions}


def _meta_numbers(pairs: list[str]) -> dict[str, float]:
    """`--meta FIELD=NUMBER` options as numbers (range and finiteness: request validation)."""
    numbers = {}
    for name, value in _parse_params(pairs, "--meta").items():
        try:
            numbers[name] = _ascii_float(value)
        except argparse.ArgumentTypeError:
            raise BadInput(
                f"--meta {name[:60]}: expected FIELD=NUMBER, got {value[:40]!r}"
            ) from None
    return numbers


def _unknown_notes(predictions: list[dict[str, Any]]) -> list[str]:
    """One line per distinct set of unknown requester fields: named once for all requests
    when they share it, per request otherwise."""
    notes = {p["unknown_note"] for p in predictions if p["unknown"]}
    shared = len(predictions) > 1 and all(p["unknown"] for p in predictions) and len(notes) == 1
    if shared:
        return [f"for all {len(predictions)} requests: {notes.pop()}"]
    return sorted(f"{p['request_id']}: {p['unknown_note']}" for p in predictions if p["unknown"])


def render_predict(out: dict[str, Any]) -> str:
    predictions = out["predictions"]
    notes = []
    for p in predictions:
        for w in p["warnings"]:
            notes.append(
                f"warning: {p['request_id']}: {w['feature']} = {w['value']:g} is outside the "
                f"training range {w['min']:g} to {w['max']:g}"
            )
    filled: dict[str, int] = {}
    for p in predictions:
        for field, value in p["defaults"].items():
            key = f"{field}={value}"
            filled[key] = filled.get(key, 0) + 1
    if filled:
        who = (
            f"for {predictions[0]['request_id']}"
            if len(predictions) == 1
            else f"for some of the {len(predictions)} requests"
            if min(filled.values()) < len(predictions)
            else f"for all {len(predictions)} requests"
        )
        notes.append(f"defaults used {who}: {', '.join(filled)}")
    notes += _unknown_notes(predictions)
    rows = [
        [p["request_id"], p["probability"], "yes" if p["decision"] else "no", p["threshold"]]
        for p in predictions
    ]
    policy = (
        f"decision at v{out['version']}'s threshold (policy {predictions[0]['threshold_policy']})"
    )
    answered = f"answered by v{out['version']} ({out['recipe']})"
    blocks = [answered, table(["request_id", "probability", "decision", "threshold"], rows), policy]
    blocks += ["\n".join(notes)] if notes else []
    blocks += [_render_explanation(p) for p in predictions if "explanation" in p]
    return "\n\n".join(blocks)


def _render_explanation(prediction: dict[str, Any]) -> str:
    """One request's log-odds contributions, base first, then its strongest words."""
    explained = prediction["explanation"]
    if "base" not in explained:
        return f"{prediction['request_id']}: no explanation: {explained['method']}"
    rows = [["base", explained["base"]]]
    rows += [
        [c["group"], "unknown" if c["unknown"] else c["value"]] for c in explained["contributions"]
    ]
    lines = [
        f"why {prediction['request_id']} scores as it does (log-odds):",
        table(["group", "log-odds"], rows),
    ]
    words = explained.get("words")
    if words:
        shown = [[w["word"], w["value"]] for w in words["words"]]
        shown.append(["all other words", words["other"]])
        lines += [
            f"{words['shown']} of {words['count']} words:",
            table(["word", "log-odds"], shown),
        ]
    lines.append(f"method: {explained['method']}")
    return "\n".join(lines)


def cmd_serve(args: argparse.Namespace) -> Any:
    """Serve the registry's versions over HTTP until interrupted (`core.serving`)."""
    from core.registry import Registry
    from core.serving.run import check_binding, serve

    check_binding(args.host)
    Registry().engine.dispose()  # migrate once, before the workers start
    os.environ.setdefault("SERVE_MODEL", args.model)
    say(f"serving model {args.model!r} on http://{args.host}:{args.port} ({args.workers} workers)")
    serve(args.host, args.port, args.workers, args.log_level)


def cmd_evaluate(args: argparse.Namespace) -> Any:
    from core import predict
    from core.dataset import load_dataset
    from core.evaluate import classification_metrics
    from core.operating_point import flags_of, policy_label

    if args.threshold is not None and not 0 < args.threshold < 1:
        raise BadInput(f"threshold must be between 0 and 1 (exclusive), got {args.threshold:g}")
    registry = open_registry()
    row = registry.resolve(args.version, args.model)
    dataset = load_dataset(args.data, for_training=False)  # one-class files can be scored
    model = predict.load_model(row, _store())
    probabilities = predict.predict_proba(model, dataset.records)
    labels = [int(r["requester_received_pizza"]) for r in dataset.records]
    given = args.threshold is not None
    threshold = args.threshold if given else row.threshold
    policy = "given with --threshold" if given else policy_label(row.metrics, row.threshold)
    metrics = classification_metrics(labels, probabilities, threshold)
    return {
        "version": row.version,
        "data": dataset.summary(),
        "metrics": metrics | {"threshold_policy": policy},
        "flags": flags_of(metrics),
    }


def render_reconcile(rows: list[dict[str, Any]]) -> str:
    """One line per adopted build: how it ended."""
    if not rows:
        return "no swarm build to adopt: every running build's launcher is alive"
    lines = []
    for row in rows:
        end = row.get("error") or f"artifact {str(row.get('artifact_sha256'))[:12]}"
        lines.append(f"v{row['version']}: adopted, {row['status']} ({end})")
    return "\n".join(lines)


def render_metrics(out: dict[str, Any]) -> str:
    m = out["metrics"]
    return table(
        ["metric", "value"],
        [[k, v] for k, v in m.items() if not isinstance(v, dict)]
        + [[k, v] for k, v in m["confusion_matrix"].items()],
    )


def cmd_reproduce(args: argparse.Namespace) -> Any:
    from core import builds

    registry = open_registry()
    row = registry.resolve(args.version, args.model)
    say(f"rebuilding version {row.version} with the {row.builder} builder ...")
    return builds.reproduce(row, registry, echo=None if args.quiet else _progress())


def cmd_recipes(args: argparse.Namespace) -> Any:
    from core.recipe_files import listing
    from core.recipes import RECIPES

    def describe(r: Any) -> dict[str, Any]:
        return {
            "name": r.name,
            "kind": r.origin,
            "summary": r.summary,
            "params": [p.describe() for p in r.params],
            **({"path": r.source.path, "sha256": r.source.sha256} if r.source else {}),
            **({"requirements": list(r.requirements)} if r.source else {}),
        }

    team = [
        describe(e["recipe"])
        if e["recipe"]
        else {"name": e["name"], "kind": "team", "path": e["path"], "error": e["error"]}
        for e in listing()
    ]
    return [describe(r) for r in RECIPES.values()] + team


def _shortened(value: Any, width: int = 24, listing: bool = True) -> Any:
    """A long cell cut to `width` characters (`--json` has the whole value); a long
    comma-separated `listing` says how many values it holds."""
    text = str(value)
    if not isinstance(value, str) or len(text) <= width:
        return value
    if listing and "," in text:
        return f"{text.count(',') + 1} values: {text[: width - 14].rstrip(',')}…"
    return text[: width - 1] + "…"


def render_recipes(out: list[dict[str, Any]]) -> str:
    blocks = []
    for r in out:
        if r.get("error"):
            blocks.append(f"{r['name']} [team, unusable]: {r['error']}")
            continue
        rows = [
            [
                p["name"],
                p["type"],
                _shortened(p["default"]),
                "|".join(map(str, p["choices"]))
                if p["choices"]
                else f"[{p['low']}, {p['high']}]"
                if p["low"] is not None
                else "-",
                _shortened(p["help"], 70, listing=False),
            ]
            for p in r["params"]
        ]
        blocks.append(
            f"{r['name']} [{r['kind']}]: {r['summary']}\n"
            + table(["param", "type", "default", "valid", "help"], rows)
        )
    return "\n\n".join(blocks)


def cmd_sample(args: argparse.Namespace) -> Any:
    from core.dataset import scan_dataset
    from core.sample import write_sample

    path = write_sample(Path(args.output), rows=args.rows)
    return scan_dataset(path).summary()


def cmd_check(args: argparse.Namespace) -> Any:
    from core.maintenance import check
    from core.registry import Registry

    report = check(Registry(), _store())
    return report.to_dict(), (0 if report.ok else 1)


def render_report(out: dict[str, Any]) -> str:
    if not out["findings"]:
        counts = ", ".join(f"{v} {k}" for k, v in out.get("checked", {}).items())
        return f"ok: nothing to report ({counts})" if counts else "nothing to do"
    return "\n".join(f"{f['kind']}: {f['message']}" for f in out["findings"])


def cmd_gc(args: argparse.Namespace) -> Any:
    from core.maintenance import gc
    from core.registry import Registry

    report = gc(Registry(), _store(), dry_run=args.dry_run, images=args.images)
    strays = report.count("stray_file")
    alone = f"; left {strays} stray file(s) alone" if strays else ""
    say(("would remove" if args.dry_run else "removed") + f" {report.acted()} item(s){alone}")
    return report.to_dict(), (1 if report.count("error") else 0)


def cmd_export(args: argparse.Namespace) -> Any:
    from core.exchange import export_version

    registry = open_registry()
    row = registry.resolve(args.version, args.model)
    try:
        return export_version(row, registry, _store(), Path(args.output))
    except OSError as exc:
        raise BadInput(f"cannot write {args.output}: {exc.strerror or exc}") from None


def cmd_import(args: argparse.Namespace) -> Any:
    from core.exchange import import_version

    registry = open_registry()
    row = import_version(Path(args.file), registry, _store(), model=args.model)
    say(f"imported as version {row.version}")
    return _as_dict(registry, row)


# --- parser ----------------------------------------------------------------------------
class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit code 2), like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        say(f"error: {' '.join(message.split())} (see {self.prog} --help)")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m core", description=__doc__.split("\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(
        name: str, handler: Handler, render: Callable[[Any], str] | None = None, help: str = ""
    ) -> argparse.ArgumentParser:
        # internal verbs (help=SUPPRESS) get no line in --help at all
        sub = (
            verbs.add_parser(name)
            if help == argparse.SUPPRESS
            else verbs.add_parser(name, help=help)
        )
        sub.add_argument("--json", action="store_true", help="print one JSON document")
        sub.add_argument("--model", default=DEFAULT_MODEL, help="model name (default raop)")
        sub.set_defaults(handler=handler, render=render)
        return sub

    train = verb("train", cmd_train, render_train, "train, evaluate and register a version")
    train.add_argument("--recipe", required=True, help=f"one of {', '.join(RECIPE_NAMES)}, ...")
    train.add_argument("--param", action="append", metavar="KEY=VALUE", default=[])
    train.add_argument("--data", default=str(SAMPLE_DATA), help="dataset (.json/.jsonl/.zip)")
    train.add_argument("--seed", type=_bounded_int(0, 2**32 - 1), default=42)
    train.add_argument("--test-size", type=_ascii_float, default=0.2)
    train.add_argument(
        "--cv",
        type=_bounded_int(2, 20),
        metavar="K",
        help="evaluate by stratified K-fold cross-validation instead of one held-out split "
        "(out-of-fold predictions for every request; the model is fitted on all of them)",
    )
    train.add_argument(
        "--cv-repeats", type=_bounded_int(1, 10), default=1, metavar="R", help="repeat the K folds"
    )
    train.add_argument(
        "--threshold-policy", metavar="POLICY", help=POLICY_HELP + "; see docs/design.md"
    )
    train.add_argument(
        "--threshold", type=_ascii_float, metavar="T", help="short for --threshold-policy fixed:T"
    )
    train.add_argument("--backend", default="auto", help="auto (default), docker, local or swarm")
    train.add_argument("--force", action="store_true", help="retrain even if identical")
    train.add_argument("--detach", action="store_true", help="build in the background")
    train.add_argument("--timeout", type=_ascii_float, help="seconds before the build stops")
    train.add_argument("--memory", help="memory limit for Docker builds, e.g. 2g")
    train.add_argument("--cpus", type=_ascii_float, help="CPU limit for Docker builds")
    train.add_argument("--quiet", action="store_true", help="no progress lines")
    train.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="a sweep: one build per combination of these values (repeatable; at most 50 "
        "builds, MAX_PARALLEL_BUILDS at a time), tagged with one sweep id",
    )

    refit = verb(
        "refit", cmd_refit, render_train, "a ready version fitted again on all of its data"
    )
    refit.add_argument("version")
    refit.add_argument("--backend", default="auto", help="auto (default), docker, local or swarm")
    refit.add_argument("--detach", action="store_true", help="build in the background")
    refit.add_argument("--quiet", action="store_true", help="no progress lines")

    run_build = verb("run-build", cmd_run_build, help=argparse.SUPPRESS)
    run_build.add_argument("id", type=_bounded_int(1, 2**62))
    run_build.add_argument("--quiet", action="store_true")

    reconciling = verb(
        "reconcile",
        cmd_reconcile,
        render_reconcile,
        "adopt swarm builds whose launcher died: collect, register and clean up each",
    )
    reconciling.add_argument("--id", type=_bounded_int(1, 2**62), help=argparse.SUPPRESS)
    reconciling.add_argument("--quiet", action="store_true", help="no progress lines")

    run_sweep = verb("run-sweep", cmd_run_sweep, help=argparse.SUPPRESS)
    run_sweep.add_argument("ids", nargs="+", type=_bounded_int(1, 2**62))
    run_sweep.add_argument("--quiet", action="store_true")

    listing = verb("list", cmd_list, None, "list versions, newest first")
    listing.add_argument("--all", action="store_true", help="include archived versions")
    listing.add_argument("--status", help="only this status")
    listing.add_argument("--recipe", help="only this recipe")
    listing.add_argument("--alias", help="only the version holding this alias")
    listing.add_argument("--tag", help="only versions with this tag")
    listing.add_argument("--limit", type=_bounded_int(1, 10**7), help="at most this many")
    listing.add_argument("--offset", type=_bounded_int(0, 10**9), default=0)
    listing.add_argument("--full", action="store_true", help="every field, with provenance")

    verb("show", cmd_show, render_show, "one version in full").add_argument("version")
    promote = verb("promote", cmd_promote, render_train, "point an alias at a version")
    promote.add_argument("version")
    promote.add_argument("--alias", default="champion")
    history = verb(
        "history", cmd_history, render_history, "when each version held an alias, and who moved it"
    )
    history.add_argument("alias", help="e.g. champion")
    verb("cancel", cmd_cancel, render_train, "cancel a queued or running build").add_argument(
        "version"
    )

    comp = verb("compare", cmd_compare, render_compare, "compare 2-4 versions")
    comp.add_argument("versions", nargs="+", metavar="VERSION")
    comp.add_argument(
        "--resamples",
        type=_bounded_int(100, 100_000),
        default=2000,
        help="bootstrap resamples (100-100,000)",
    )
    comp.add_argument(
        "--at",
        metavar="POINT",
        help="where threshold-dependent figures are taken: own (each version's threshold, "
        "the default), fpr=0.2 (equal false positive rate), flagged=0.3 (equal share of "
        "requests predicted to get a pizza) or threshold=0.4",
    )

    pred = verb("predict", cmd_predict, render_predict, "score requests with a version")
    pred.add_argument("version")
    pred.add_argument("--title")
    pred.add_argument("--text")
    pred.add_argument("--file", help="JSON list / JSONL of requests")
    pred.add_argument(
        "--time", help="when the typed request is posted: ISO date/time (UTC) or Unix seconds"
    )
    pred.add_argument(
        "--meta",
        action="append",
        default=[],
        metavar="FIELD=NUMBER",
        help="a requester number at request time, e.g. "
        "requester_account_age_in_days_at_request=400 (repeatable; missing ones are unknown: "
        "averaged over the version's training requesters)",
    )
    pred.add_argument(
        "--explain",
        action="store_true",
        help="add each group's log-odds contribution and the strongest words",
    )

    ev = verb("evaluate", cmd_evaluate, render_metrics, "metrics on another labelled file")
    ev.add_argument("version")
    ev.add_argument("--data", required=True)
    ev.add_argument(
        "--threshold",
        type=_ascii_float,
        metavar="T",
        help="decide at T instead of the version's own threshold (its operating point)",
    )

    srv = verb("serve", cmd_serve, None, "serve versions and aliases over HTTP")
    srv.add_argument("--host", default="127.0.0.1", help="address (beyond loopback: SERVE_TOKEN)")
    srv.add_argument("--port", type=_bounded_int(1, 65535), default=8000)
    srv.add_argument("--workers", type=_bounded_int(1, 64), default=1, help="uvicorn workers")
    srv.add_argument("--log-level", default="warning", choices=["debug", "info", "warning"])

    rep = verb("reproduce", cmd_reproduce, None, "rebuild a version and compare")
    rep.add_argument("version")
    rep.add_argument("--quiet", action="store_true")

    verb("check", cmd_check, render_report, "verify the database, artifacts and builds")
    collect = verb("gc", cmd_gc, render_report, "remove what no version needs")
    collect.add_argument("--dry-run", action="store_true", help="only say what would go")
    collect.add_argument(
        "--images",
        action="store_true",
        help="also remove trainer images no version of this registry needs",
    )
    export = verb("export", cmd_export, None, "write a version to one archive")
    export.add_argument("version")
    export.add_argument("-o", "--output", required=True)
    verb("import", cmd_import, render_train, "register a verified archive").add_argument("file")
    verb("recipes", cmd_recipes, render_recipes, "list recipes and their parameters")
    sample = verb("sample", cmd_sample, None, "write the bundled synthetic sample")
    sample.add_argument("-o", "--output", default=str(SAMPLE_DATA))
    sample.add_argument("--rows", type=_bounded_int(10, 100_000), default=400)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 2 on bad usage, 0 for --help
        return int(exc.code or 0)
    try:
        out = args.handler(args)
        code = 0
        if isinstance(out, tuple):
            out, code = out
        _emit(args, out)
    except AltruismError as exc:
        say(f"error: {_one_line(exc)}")
        return exc.exit_code
    except MemoryError:
        say("error: the input needs more memory than is available; nothing was changed")
        return 2
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except BrokenPipeError:  # e.g. `list | head`
        sys.stderr.close()
        return 0
    except Exception as exc:  # anything unexpected: one line, no traceback unless asked
        if os.environ.get("ALTRUISM_DEBUG"):
            raise
        say(f"error: {type(exc).__name__}: {_one_line(exc)}")
        return 1
    return code


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:2000]


def _emit(args: argparse.Namespace, out: Any) -> None:
    if out is None:  # nothing to say (run-build --quiet: the build log is in the registry)
        return
    if isinstance(out, Streamed):
        if args.json:
            out.write_json()
        else:
            print(out.render())
        return
    if args.json or args.render is None:
        print(json.dumps(out, indent=2, default=str))
    else:
        print(args.render(out))
