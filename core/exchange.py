"""Export a version to one archive and import it elsewhere, verifying every digest.

An archive is untrusted input. Import checks every member's digest, then validates the
whole version record against the shape this project writes (a known recipe with exactly
its resolved parameters, a known builder, numeric metrics in range and consistent with the
test predictions, sha256 digests, a sha256 image id) and rebuilds the record from the
validated values only: the fingerprint is recomputed, paths are never reused, and the
version is marked imported, so it never satisfies a reuse lookup of a later `train`.
Reading is bounded: member sizes are checked before and while they are read.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from core.artifacts import ArtifactStore
from core.errors import BadInput
from core.operating_point import LEGACY_SUFFIX
from core.registry import Registry, version_dict
from core.safefile import check_output, write_output
from core.schema import READY, ModelVersion

FORMAT = "altruism-lab-export/1"
MANIFEST = "manifest.json"
ARTIFACT = "artifact.joblib"
MEMBERS = (ARTIFACT, "model_card.md", "model_card.json", "details.json")
MAX_ARCHIVE_BYTES = 1 << 30  # the archive file, and all members unzipped together
MEMBER_LIMITS = {
    MANIFEST: 1 << 20,
    "model_card.md": 1 << 20,
    "model_card.json": 1 << 20,
    "details.json": 16 << 20,
    "artifact.joblib": MAX_ARCHIVE_BYTES,
}
SHA256 = re.compile(r"^[0-9a-f]{64}$")
IMAGE_ID = re.compile(r"^sha256:[0-9a-f]{64}$")
BUILDERS = ("local", "docker", "swarm")
UNIT_METRICS = ("accuracy", "brier")
OPTIONAL_UNIT_METRICS = ("precision", "recall", "f1", "fpr", "fnr", "roc_auc", "average_precision")
TEXT_LIMIT = 300
CV_TEST_SIZE = 0.2  # what a cross-validated request records (TrainRequest's default)
MAX_DETAIL_OBJECTS = 64  # details.json holds a few lists: parse no flood of tiny objects


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _record_sha(version: dict[str, Any]) -> str:
    """Digest of the manifest's version record (metrics, params, fingerprint, ...)."""
    return _sha(json.dumps(version, sort_keys=True, separators=(",", ":")).encode())


def export_version(
    row: ModelVersion, registry: Registry, store: ArtifactStore, output: Path
) -> dict[str, Any]:
    """Write artifact, model card, provenance, metrics and details into one zip archive."""
    from core.modelcard import model_card, model_card_markdown

    if row.status != READY:
        raise BadInput(f"version {row.version} is {row.status}; only ready versions export")
    check_output(output)  # before any work: a planted FIFO or device is refused at once
    artifact = store.read_verified(row.artifact_sha256)
    card = model_card(row, registry)
    details = registry.details(row.id)
    files = {
        "artifact.joblib": artifact,
        "model_card.md": model_card_markdown(card).encode(),
        "model_card.json": json.dumps(card, indent=2, default=str).encode(),
        "details.json": json.dumps(
            {
                "curves": details.curves,
                "test_ids": details.test_ids,
                "test_labels": details.test_labels,
                "test_probabilities": details.test_probabilities,
            }
        ).encode(),
    }
    version = json.loads(json.dumps(version_dict(row), default=str))  # as import reads it
    manifest = {
        "format": FORMAT,
        "exported_at": datetime.now(UTC).isoformat(),
        "version": version,
        "version_sha256": _record_sha(version),
        "files": {n: _sha(b) for n, b in files.items()},
    }

    def write(handle: IO[bytes]) -> None:
        with zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(MANIFEST, json.dumps(manifest, indent=2, default=str))
            for name, data in files.items():
                archive.writestr(name, data)

    write_output(output, write)
    return {"path": str(output), "version": row.version, "files": manifest["files"]}


JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def parse_details(data: bytes) -> Any:
    """details.json, parsed only when it has the few lists and objects an export writes: a
    flood of tiny `[]` or `{}` would take ~20x its size in memory (counted outside strings)."""
    structure = JSON_STRING.sub(b'""', data)
    if structure.count(b"[") + structure.count(b"{") > MAX_DETAIL_OBJECTS:
        raise BadInput("details.json is not shaped like an export's details")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise BadInput("details.json is not JSON") from exc


@dataclass(frozen=True)
class Member:
    """A large member, hashed while streaming (its bytes are never held in memory)."""

    sha256: str
    size: int


def _hash_member(archive: zipfile.ZipFile, name: str) -> Member:
    limit, size, digest = MEMBER_LIMITS[name], 0, hashlib.sha256()
    with archive.open(name) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            size += len(block)
            if size > limit:
                raise BadInput(f"{name} is larger than {limit >> 20} MB")
            digest.update(block)
    return Member(digest.hexdigest(), size)


def _digest_of(value: bytes | Member) -> str:
    return value.sha256 if isinstance(value, Member) else _sha(value)


def _read_member(archive: zipfile.ZipFile, name: str) -> bytes:
    limit = MEMBER_LIMITS[name]
    with archive.open(name) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise BadInput(f"{name} is larger than {limit >> 20} MB")
    return data


def _read_archive(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    if not path.is_file():
        raise BadInput(f"archive not found: {path}")
    if path.stat().st_size > MAX_ARCHIVE_BYTES:
        raise BadInput(f"{path.name} is larger than {MAX_ARCHIVE_BYTES >> 20} MB")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            expected = {MANIFEST, *MEMBERS}
            if names != expected:
                unexpected = sorted(names ^ expected)[:10]
                raise BadInput(f"{path.name}: unexpected contents {unexpected}")
            if sum(info.file_size for info in archive.infolist()) > MAX_ARCHIVE_BYTES:
                raise BadInput(f"{path.name} would unzip to more than {MAX_ARCHIVE_BYTES >> 20} MB")
            for info in archive.infolist():
                if info.file_size > MEMBER_LIMITS[info.filename]:
                    raise BadInput(
                        f"{path.name}: {info.filename} would unzip to more than "
                        f"{MEMBER_LIMITS[info.filename] >> 20} MB"
                    )
            manifest = json.loads(_read_member(archive, MANIFEST))
            data: dict[str, Any] = {
                name: _read_member(archive, name) for name in MEMBERS if name != ARTIFACT
            }
            data[ARTIFACT] = _hash_member(archive, ARTIFACT)
    except (
        zipfile.BadZipFile,
        zlib.error,  # a corrupted deflate stream
        EOFError,
        NotImplementedError,  # a corrupted compression method or version field
        RuntimeError,  # a corrupted flag claims encryption
        OSError,
        ValueError,  # includes JSONDecodeError and UnicodeDecodeError
        RecursionError,
        MemoryError,
    ) as exc:
        raise BadInput(f"{path.name} is not an Altruism Lab export ({type(exc).__name__})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BadInput(f"{path.name}: unknown export format")
    return manifest, data


def verify_archive(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check every member's sha256 against the manifest; BadInput naming the first mismatch.
    Returns the manifest and the members: bytes, except the artifact (a `Member`)."""
    manifest, data = _read_archive(path)
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BadInput(f"{path.name}: the manifest lists no member digests")
    for name in MEMBERS:
        if _digest_of(data[name]) != files.get(name):
            raise BadInput(
                f"{path.name}: {name} was modified (sha256 does not match the "
                "manifest); refusing to import"
            )
    version = manifest.get("version")
    if not isinstance(version, dict) or manifest.get("version_sha256") != _record_sha(version):
        raise BadInput(
            f"{path.name}: the manifest's version record was modified (sha256 does not "
            "match); refusing to import"
        )
    if data[ARTIFACT].sha256 != version.get("artifact_sha256"):
        raise BadInput(
            f"{path.name}: the artifact does not match the version's recorded "
            "sha256; refusing to import"
        )
    try:
        card = json.loads(data["model_card.json"])
    except (ValueError, RecursionError) as exc:
        raise BadInput(f"{path.name}: the model card is not JSON") from exc
    if not isinstance(card, dict) or not isinstance(card.get("artifact"), dict):
        raise BadInput(f"{path.name}: the model card has no artifact section")
    if card["artifact"].get("sha256") != version.get("artifact_sha256"):
        raise BadInput(f"{path.name}: the model card and manifest disagree on the artifact")
    return manifest, data


# --- validation of the record: every field, against the shape this project writes --------
class Invalid(BadInput):
    pass


def _fail(where: str, what: str) -> Invalid:
    return Invalid(f"the archive's {where} {what}; refusing to import")


def _number(value: Any, where: str, low: float, high: float, integer: bool = False) -> Any:
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type or not math.isfinite(float(value)):
        raise _fail(where, f"must be a {'whole ' if integer else ''}number")
    if not low <= value <= high:
        raise _fail(where, f"must be between {low:g} and {high:g}")
    return int(value) if integer else float(value)


def _digest(value: Any, where: str, pattern: re.Pattern = SHA256) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise _fail(where, "is not a sha256 digest")
    return value


def plain_text(value: Any, where: str, limit: int = TEXT_LIMIT) -> str:
    """A short single-line printable string (shown in tables and headings as plain text)."""
    if not isinstance(value, str) or len(value) > limit:
        raise _fail(where, f"must be text of at most {limit} characters")
    if not value.isprintable():
        raise _fail(where, "contains control characters")
    return value


def validate_metrics(metrics: Any, threshold: float) -> dict[str, Any]:
    if not isinstance(metrics, dict):
        raise _fail("metrics", "are missing")
    known = {"threshold", "threshold_policy", "n", "positives", "confusion_matrix", "log_loss"}
    known.add("evaluation")
    known |= set(UNIT_METRICS) | set(OPTIONAL_UNIT_METRICS)
    extra = sorted(set(metrics) - known)
    if extra:
        raise _fail("metrics", f"hold unknown entries {extra[:5]}")
    out: dict[str, Any] = {"threshold": threshold}
    if metrics.get("threshold") != threshold:
        raise _fail("metrics' threshold", "differs from the version's")
    n = out["n"] = _number(metrics.get("n"), "metric n", 1, 1e9, integer=True)
    out["positives"] = _number(metrics.get("positives"), "metric positives", 0, n, integer=True)
    matrix = metrics.get("confusion_matrix")
    if not isinstance(matrix, dict) or set(matrix) != {"tn", "fp", "fn", "tp"}:
        raise _fail("confusion matrix", "must have tn, fp, fn and tp")
    cm = {k: _number(matrix[k], f"confusion matrix {k}", 0, n, integer=True) for k in matrix}
    if sum(cm.values()) != n or cm["fn"] + cm["tp"] != out["positives"]:
        raise _fail("confusion matrix", "does not add up to n and positives")
    out["confusion_matrix"] = {k: cm[k] for k in ("tn", "fp", "fn", "tp")}
    for name in UNIT_METRICS:
        out[name] = _number(metrics.get(name), f"metric {name}", 0.0, 1.0)
    for name in OPTIONAL_UNIT_METRICS:
        value = metrics.get(name)
        out[name] = None if value is None else _number(value, f"metric {name}", 0.0, 1.0)
    out["log_loss"] = _number(metrics.get("log_loss"), "metric log_loss", 0.0, 1e3)
    out["threshold_policy"] = _policy(metrics.get("threshold_policy"), threshold)
    if "evaluation" in metrics:  # cross-validated: pooled out-of-fold metrics
        from core.exchange_cv import validate_evaluation

        out["evaluation"] = validate_evaluation(metrics["evaluation"])
    return out


def _policy(value: Any, threshold: float) -> str:
    """A recorded threshold policy: one the CLI accepts, or the label of a version from
    before operating points (missing in archives of that time)."""
    from core.operating_point import parse_policy, policy_label

    if value is None or value == policy_label(None, threshold):
        return policy_label(None, threshold)
    try:
        return parse_policy(plain_text(value, "threshold policy", 100)).label
    except BadInput:
        raise _fail("threshold policy", "is not one this version could have used") from None


def check_metrics_against_predictions(metrics: dict[str, Any], details: dict[str, Any]) -> None:
    """Refuse metrics that the archive's own test predictions do not give."""
    from core.evaluate import classification_metrics

    labels, probabilities = details["test_labels"], details["test_probabilities"]
    cut = metrics["threshold"]
    if "evaluation" in metrics:  # each request at the threshold of the fold that scored it
        from core.exchange_cv import row_cuts

        cut = row_cuts(metrics, details)
    recomputed = classification_metrics(labels, probabilities, cut)
    for name, claimed in metrics.items():
        if name in ("threshold", "threshold_policy", "evaluation"):
            continue
        actual = recomputed.get(name)
        if claimed is None or actual is None or isinstance(claimed, dict):
            if claimed != actual:
                raise _fail(f"metric {name}", "does not follow from the test predictions")
        elif abs(claimed - actual) > 1e-6:
            raise _fail(
                f"metric {name}",
                f"is {claimed:g} but the archive's own test predictions give {actual:g}",
            )


def validate_details(details: Any, metrics: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(details, dict):
        raise _fail("details", "are missing")
    ids, labels, probs = (details.get(k) for k in ("test_ids", "test_labels", "test_probabilities"))
    n = metrics["n"]
    if not all(isinstance(x, list) and len(x) == n for x in (ids, labels, probs)):
        raise _fail("test predictions", f"must be three lists of {n} entries")
    if not all(isinstance(i, str) and 0 < len(i) <= TEXT_LIMIT for i in ids) or len(set(ids)) != n:
        raise _fail("test request ids", "must be distinct short strings")
    if any(label not in (0, 1) or isinstance(label, bool) for label in labels):
        raise _fail("test labels", "must be 0 or 1")
    if sum(labels) != metrics["positives"]:
        raise _fail("test labels", "do not match the metrics' positives")
    probabilities = [_number(p, "test probability", 0.0, 1.0) for p in probs]
    curves = details.get("curves")
    clean_curves: dict[str, Any] = {}
    for kind, axes in (("roc", ("fpr", "tpr")), ("pr", ("recall", "precision"))):
        points = curves.get(kind) if isinstance(curves, dict) else None
        if not isinstance(points, dict):
            raise _fail("curves", f"lack the {kind} curve")
        series = {}
        for axis in axes:
            values = points.get(axis)
            if not isinstance(values, list) or not 0 < len(values) <= 2000:
                raise _fail(f"{kind} curve", f"needs 1-2000 {axis} points")
            series[axis] = [_number(v, f"{kind} curve point", 0.0, 1.0) for v in values]
        if len(series[axes[0]]) != len(series[axes[1]]):
            raise _fail(f"{kind} curve", "has axes of different lengths")
        clean_curves[kind] = series
    return {
        "curves": clean_curves,
        "test_ids": ids,
        "test_labels": [int(label) for label in labels],
        "test_probabilities": probabilities,
    }


def validate_provenance(prov: Any, builder: str) -> dict[str, Any]:
    """Only the provenance fields this project writes, each of its type (the rest is dropped)."""
    if not isinstance(prov, dict):
        raise _fail("provenance", "is missing")
    out: dict[str, Any] = {"builder": builder}
    code = prov.get("code_fingerprint")
    out["code_fingerprint"] = _digest(code, "code fingerprint") if code is not None else None
    git = prov.get("git") if isinstance(prov.get("git"), dict) else {}
    commit = git.get("commit")
    if commit is not None and not (
        isinstance(commit, str) and re.fullmatch(r"[0-9a-f]{40}", commit)
    ):
        raise _fail("git commit", "is not a commit id")
    out["git"] = {
        "commit": commit,
        "dirty": git.get("dirty") if git.get("dirty") in (True, False) else None,
    }
    for key in ("python", "platform", "started_at", "finished_at"):
        if prov.get(key) is not None:
            out[key] = plain_text(prov[key], key, 200)
    for key in ("packages",):
        packages = prov.get(key)
        if packages is not None:
            if not isinstance(packages, dict) or len(packages) > 50:
                raise _fail("packages", "must map package names to versions")
            out[key] = {
                plain_text(k, "package name", 100): plain_text(v, "package version", 100)
                for k, v in packages.items()
            }
    host = prov.get("host_environment")
    if isinstance(host, dict) and isinstance(host.get("packages"), dict):
        out["host_environment"] = {
            "packages": {
                plain_text(k, "package name", 100): plain_text(v, "package version", 100)
                for k, v in host["packages"].items()
            }
        }
    for key, high in (("data_rows", 1e9), ("data_positives", 1e9)):
        if prov.get(key) is not None:
            out[key] = _number(prov[key], key, 0, high, integer=True)
    for key in ("fit_seconds", "evaluate_seconds"):
        if prov.get(key) is not None:
            out[key] = _number(prov[key], key, 0.0, 1e7)
    if prov.get("data_name") is not None:
        out["data_name"] = plain_text(prov["data_name"], "dataset name")
    split = prov.get("split")
    if not isinstance(split, dict):
        raise _fail("split", "is missing from the provenance")
    out["split"] = _split(split)
    refit = prov.get("refit_of")
    if refit is not None:  # scored by its parent: the number is the source registry's
        if not isinstance(refit, dict):
            raise _fail("refit_of", "must name the version refitted")
        number = _number(refit.get("version"), "refitted version", 1, 2**62, integer=True)
        out["refit_of"] = {"version": number}
    image = (
        (prov.get("docker") or {}).get("image_id") if isinstance(prov.get("docker"), dict) else None
    )
    if builder == "docker":
        out["docker"] = {"image_id": _digest(image, "docker image id", IMAGE_ID) if image else None}
    return out


def _split(split: dict[str, Any]) -> dict[str, Any]:
    """A held-out split (seed, test size, hash) or cross-validation's (seed, hash, cv)."""
    out = {
        "seed": _number(split.get("seed"), "split seed", 0, 2**32 - 1, integer=True),
        "test_size": None,
        "hash": _digest(split.get("hash"), "split hash"),
    }
    cv = split.get("cv")
    if cv is None:
        out["test_size"] = _number(split.get("test_size"), "split test size", 0.05, 0.5)
        return out
    if not isinstance(cv, dict) or set(cv) != {"folds", "repeats"} or split.get("test_size"):
        raise _fail("split", "must name its folds and repeats and no test size")
    out["cv"] = {k: _number(cv[k], f"split {k}", 1, 100, integer=True) for k in cv}
    return out


def validate_recipe_file(prov: Any, recipe: Any) -> dict[str, Any] | None:
    """A team recipe's recorded source, rebuilt from checked values (its text must hash to
    its sha256 and carry the version's recipe name); None for a built-in recipe."""
    from core import recipe_files

    record = prov.get("recipe_file") if isinstance(prov, dict) else None
    if record is None:
        return None
    try:
        checked = recipe_files.from_record(record)
    except BadInput:
        raise _fail("recipe source", "is incomplete or does not match its sha256") from None
    if checked.name != recipe or not recipe_files.NAME.match(checked.name):
        raise _fail("recipe source", "names another recipe")
    if len(checked.source) > recipe_files.MAX_SOURCE_CHARS:
        raise _fail("recipe source", "is too large")
    requirements = record.get("requirements") or []
    if not isinstance(requirements, list) or not all(
        isinstance(r, str) and len(r) <= 200 and recipe_files.REQUIREMENT.match(r)
        for r in requirements
    ):
        raise _fail("recipe source", "has requirements that are not plain specifiers")
    return checked.record(requirements[: recipe_files.MAX_REQUIREMENTS])


def _plain_params(params: dict[str, Any]) -> dict[str, Any]:
    """A team recipe's parameters: identifiers mapped to plain finite values."""
    for key, value in params.items():
        finite = not isinstance(value, float) or math.isfinite(value)
        plain = isinstance(value, bool | int | float) or (
            isinstance(value, str) and len(value) <= 1000
        )
        if not (isinstance(key, str) and key.isidentifier() and plain and finite):
            raise _fail("parameters", f"are invalid ({str(key)[:40]!r})")
    return dict(params)


def validate_version(source: dict[str, Any], details: Any, model: str) -> dict[str, Any]:
    """The values to register for an imported version, each validated; Invalid otherwise."""
    from core.builds import version_fingerprint
    from core.recipes import RECIPES

    recipe = source.get("recipe")
    team = validate_recipe_file(source.get("provenance"), recipe)
    if team is None and (not isinstance(recipe, str) or recipe not in RECIPES):
        raise _fail("recipe", f"must be one of {', '.join(RECIPES)} or carry its source")
    params = source.get("params")
    if not isinstance(params, dict):
        raise _fail("parameters", "are missing")
    if team is not None:  # its source is not run to import it: plain values only
        resolved = _plain_params(params)
    else:
        try:
            resolved = RECIPES[recipe].resolve(params)
        except BadInput as exc:
            raise _fail("parameters", f"are invalid ({exc})") from None
    if resolved != params:
        raise _fail("parameters", f"are not the complete resolved set of {recipe}")
    builder = source.get("builder")
    if builder not in BUILDERS:
        raise _fail("builder", f"must be one of {', '.join(BUILDERS)}")
    threshold = _number(source.get("threshold"), "threshold", 1e-6, 1 - 1e-6)
    if source.get("status") != READY:
        raise _fail("status", "must be ready")
    metrics = validate_metrics(source.get("metrics"), threshold)
    clean_details = validate_details(details, metrics)
    check_metrics_against_predictions(metrics, clean_details)
    provenance = validate_provenance(source.get("provenance"), builder)
    if team is not None:
        provenance["recipe_file"] = team
    data_sha256 = _digest(source.get("data_sha256"), "dataset digest")
    split_hash = _check_split(source, metrics, provenance, clean_details, data_sha256)
    host = provenance.get("host_environment", {}).get("packages") or provenance.get("packages")
    cv = provenance["split"].get("cv")
    test_size = provenance["split"]["test_size"] if cv is None else CV_TEST_SIZE
    if cv:  # how the registry tells a cross-validated version (`builds.cv_of`)
        provenance["request"] = {"cv": cv}
    policy = metrics["threshold_policy"]
    refit = "refit_of" in provenance
    if policy.endswith(LEGACY_SUFFIX):  # built before operating points: the fingerprint then
        point = {"threshold": threshold}
        refit_facts = {"refit": True} if refit else {}
    else:
        point = {"threshold_policy": policy}
        refit_facts = {"refit": True, "threshold": threshold} if refit else {}
    fingerprint = version_fingerprint(
        model=model,
        recipe=recipe,
        params=resolved,
        data_sha256=data_sha256,
        seed=provenance["split"]["seed"],
        test_size=test_size,
        **point,
        code=provenance["code_fingerprint"],
        packages=host,
        builder=builder,
        **refit_facts,
        **({"cv": cv} if cv else {}),
        **({"recipe_sha256": team["sha256"]} if team else {}),
    )
    name = source.get("data_name") or provenance.get("data_name") or "imported dataset"
    return {
        "recipe": recipe,
        "params": resolved,
        "threshold": threshold,
        "builder": builder,
        "fingerprint": fingerprint,
        "data_sha256": data_sha256,
        "data_name": plain_text(name, "dataset name"),
        "split_seed": provenance["split"]["seed"],
        "split_test_size": test_size,
        "split_hash": split_hash,
        "metrics": metrics,
        "provenance": provenance,
        "details": clean_details,
    }


def _check_split(
    source: dict[str, Any],
    metrics: dict[str, Any],
    provenance: dict[str, Any],
    details: dict[str, Any],
    data_sha256: str,
) -> str:
    """The split hash, checked: a held-out split's against its test ids, a cross-validated
    version's fold hash against its seed, folds, repeats and dataset digest."""
    split_hash = _digest(source.get("split_hash"), "split hash")
    if split_hash != provenance["split"]["hash"]:
        raise _fail("split hash", "differs from the provenance's")
    if "evaluation" in metrics:
        from core.exchange_cv import check_fold_hash

        return check_fold_hash(metrics["evaluation"], provenance["split"], data_sha256)
    if "cv" in provenance["split"]:
        raise _fail("split", "names folds but the metrics hold no cross-validation")
    from core.evaluate import split_hash as hash_of_ids

    if hash_of_ids(details["test_ids"]) != split_hash:
        raise _fail("split hash", "does not match its test request ids")
    return split_hash


def _store_artifact(path: Path, store: ArtifactStore, sha256: str) -> tuple[str, int]:
    """Stream the archive's artifact into the store; its sha256 must still be `sha256`."""
    limit = MEMBER_LIMITS[ARTIFACT]
    with tempfile.TemporaryDirectory(prefix="altruism-import-") as tmp:
        target = Path(tmp) / ARTIFACT
        try:
            with (
                zipfile.ZipFile(path) as archive,
                archive.open(ARTIFACT) as src,
                open(target, "wb") as out,
            ):
                shutil.copyfileobj(_bounded(src, limit), out, 1 << 20)
        except (zipfile.BadZipFile, zlib.error, EOFError, KeyError, OSError) as exc:
            raise BadInput(f"{path.name} changed while it was imported ({exc})") from None
        return store.put_file(target, "model", sha256=sha256)


class _bounded:
    """A reader that refuses to yield more than `limit` bytes."""

    def __init__(self, handle: Any, limit: int) -> None:
        self.handle, self.left = handle, limit

    def read(self, size: int = -1) -> bytes:
        block = self.handle.read(1 << 20 if size < 0 else size)
        self.left -= len(block)
        if self.left < 0:
            raise OSError("the artifact grew past its limit")
        return block


def import_version(
    path: Path, registry: Registry, store: ArtifactStore, model: str | None = None
) -> ModelVersion:
    """Register a verified, validated archive as a new ready version (never unpickles)."""
    from core.registry import check_name

    manifest, data = verify_archive(path)
    source = manifest["version"]
    target = check_name("model name", model or source.get("model") or "raop")
    try:
        details = parse_details(data["details.json"])
    except BadInput as exc:
        raise BadInput(f"{path.name}: {exc}") from None
    clean = validate_version(source, details, target)
    original_version = source.get("version")
    provenance = clean["provenance"] | {
        "imported": {
            "from": plain_text(path.name, "archive name"),
            "original_model": plain_text(str(source.get("model"))[:100], "original model"),
            "original_version": original_version if isinstance(original_version, int) else None,
            "exported_at": plain_text(str(manifest.get("exported_at"))[:40], "export time"),
        }
    }
    artifact: Member = data[ARTIFACT]
    row = registry.create_version(
        target,
        recipe=clean["recipe"],
        params=clean["params"],
        threshold=clean["threshold"],
        threshold_policy=clean["metrics"]["threshold_policy"],
        builder=clean["builder"],
        fingerprint=clean["fingerprint"],
        data_path="",
        data_sha256=clean["data_sha256"],
        data_name=clean["data_name"],
        data_kind="imported",
        imported=True,
        split_seed=clean["split_seed"],
        split_test_size=clean["split_test_size"],
        provenance=provenance,
    )
    sha256 = artifact.sha256
    try:
        registry.mark_running(row.id, "importing")
        registry.pin_artifact(row.id, sha256)
        stored, size = _store_artifact(path, store, sha256)
        return registry.complete(
            row.id,
            metrics=clean["metrics"],
            provenance=provenance,
            split_hash=clean["split_hash"],
            artifact_sha256=stored,
            artifact_size=size,
            details=clean["details"],
        )
    except BaseException as exc:
        registry.fail(row.id, f"import failed: {exc}")
        from core.builds import discard_unreferenced

        discard_unreferenced(registry, store, "model", sha256)
        raise
