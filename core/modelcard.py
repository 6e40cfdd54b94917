"""Model cards: what a version is, its data, metrics, provenance and how to load it."""

from __future__ import annotations

import json
from typing import Any

from core.compare import METRICS, evaluation_of
from core.operating_point import LEGACY_SUFFIX, flag_warning, parse_policy, policy_label
from core.recipes import RECIPES
from core.registry import Registry, version_dict
from core.schema import ModelVersion
from core.serving.live import served_summary


def model_card(row: ModelVersion, registry: Registry) -> dict[str, Any]:
    """The card as a JSON-ready dict."""
    version = version_dict(row, registry.aliases_by_version(row.model.name).get(row.id, []))
    recipe = RECIPES.get(row.recipe)
    prov = row.provenance or {}
    return {
        "model": row.model.name,
        "version": row.version,
        "status": row.status,
        "imported": row.imported,
        "aliases": version["aliases"],
        "what": recipe.summary if recipe else row.recipe,
        "intended_use": "Estimate whether a Random Acts of Pizza request receives a pizza. "
        "Research and demonstration only; not for decisions about people.",
        "recipe": row.recipe,
        "params": row.params,
        "threshold": row.threshold,
        "threshold_policy": version["threshold_policy"],
        "operating_point": _operating_point_words(row),
        "flags": version["flags"],
        "data": {
            "name": row.data_name,
            "kind": row.data_kind,
            "sha256": row.data_sha256,
            "rows": prov.get("data_rows"),
            "positives": prov.get("data_positives"),
            "split": prov.get("split"),
        },
        "metrics": row.metrics,
        "evaluation": evaluation_of(row)["label"],
        "provenance": prov,
        "artifact": {
            "sha256": row.artifact_sha256,
            "size": row.artifact_size,
            "format": "joblib (sklearn Pipeline)",
        },
        "recipe_file": prov.get("recipe_file"),  # a team recipe's source and sha256
        "how_to_load": _how_to_load(row),
        "served": served_summary(registry, row.model.name, row.id),
        "tags": version["tags"],
        "note": row.note,
        "created_by": row.created_by,
    }


def _operating_point_words(row: ModelVersion) -> str:
    """How the version turns probabilities into decisions, in one sentence."""
    label = policy_label(row.metrics, row.threshold)
    if label.endswith(LEGACY_SUFFIX):
        return (
            f"A request is predicted to get a pizza when its probability is at least "
            f"{row.threshold:g}, a threshold fixed by hand before operating points were chosen."
        )
    return (
        f"A request is predicted to get a pizza when its probability is at least "
        f"{row.threshold:g}: {parse_policy(label).meaning()} (policy {label}). Every "
        "threshold-dependent metric below is taken there."
    )


def _how_to_load(row: ModelVersion) -> str:
    return (
        f"python -m core predict {row.version} --title '...' --text '...'  # verified load\n"
        "# In Python (verifies the sha256 before unpickling):\n"
        "from core.registry import Registry; from core.predict import load_model\n"
        f"model = load_model(Registry().resolve({row.version}, {row.model.name!r}))"
    )


def _fmt(value: Any) -> str:
    if value is None:
        return "— (undefined: nothing to divide by)"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def model_card_markdown(card: dict[str, Any]) -> str:
    """The card rendered as Markdown."""
    metrics = card["metrics"] or {}
    cm = metrics.get("confusion_matrix", {})
    prov = card["provenance"]
    lines = [
        f"# Model card: {card['model']} v{card['version']}",
        "",
        f"**Status:** {card['status']}  ",
        f"**Aliases:** {', '.join(card['aliases']) or 'none'}  ",
        f"**Recipe:** `{card['recipe']}`: {card['what']}",
        "",
        "## Intended use",
        card["intended_use"],
        "",
        "## Parameters",
        "```json",
        json.dumps(card["params"], indent=2),
        "```",
        "",
        "## Data",
        f"- dataset: {card['data']['name']} ({card['data']['kind']})",
        f"- sha256: `{card['data']['sha256']}`",
        f"- rows: {card['data']['rows']}, positives: {card['data']['positives']}",
        f"- split: {json.dumps(card['data']['split'])}",
        "",
        f"## Metrics ({card['evaluation']}, threshold {card['threshold']:g}, "
        f"policy {card['threshold_policy']})",
        card["operating_point"],
        *([f"**Warning:** {w}"] if (w := flag_warning(card["version"], metrics)) else []),
        "",
        "| metric | value |",
        "| --- | --- |",
        *(f"| {name} | {_fmt(metrics.get(name))} |" for name in METRICS),
        "",
        "Confusion matrix: " + ", ".join(f"{k} {cm.get(k)}" for k in ("tn", "fp", "fn", "tp")),
        "",
        "## Provenance",
        f"- builder: {prov.get('builder')}",
        f"- git: {json.dumps(prov.get('git'))}",
        f"- code fingerprint: `{prov.get('code_fingerprint')}`",
        f"- python {prov.get('python')} on {prov.get('platform')}",
        f"- packages: {json.dumps(prov.get('packages'))}",
        *([f"- docker image: `{prov['docker'].get('image_id')}`"] if "docker" in prov else []),
        *(_swarm_lines(prov["swarm"]) if isinstance(prov.get("swarm"), dict) else []),
        f"- built {prov.get('started_at')} to {prov.get('finished_at')}"
        + (f", queued by {card['created_by']}" if card.get("created_by") else ""),
        "",
        *_recipe_lines(card.get("recipe_file")),
        "## Artifact",
        f"`{card['artifact']['sha256']}` ({card['artifact']['size']} bytes, "
        f"{card['artifact']['format']})",
        "",
        "## How to load",
        "```bash",
        card["how_to_load"].split("\n", 1)[0],
        "```",
        "```python",
        card["how_to_load"].split("\n", 1)[1],
        "```",
        "",
        *_served_lines(card.get("served")),
    ]
    if card["note"]:
        lines += ["", "## Note", card["note"]]
    return "\n".join(lines) + "\n"


def _served_lines(served: dict[str, Any] | None) -> list[str]:
    """Where and when `python -m core serve` answered with this version."""
    if not served:
        return ["## Served", "Not served by `python -m core serve` yet."]
    share = served["out_of_range_share"]
    return [
        "## Served",
        f"- {served['requests']:,} requests in {served['calls']:,} calls "
        f"({served['errors']:,} failed), from {served['first']} to {served['until']}",
        f"- hosts: {', '.join(served['hosts'])}",
        f"- as: {', '.join(served['aliases']) or 'its version number only'}",
        f"- p99 latency {served['p99_ms']} ms; "
        f"{'—' if share is None else f'{share:.1%}'} of requests had inputs out of range",
    ]


def _recipe_lines(recorded: Any) -> list[str]:
    """A team recipe's source, as recorded when the version was built."""
    if not isinstance(recorded, dict):
        return []
    fence = "````"  # the source may hold ``` itself
    return [
        f"## Recipe source ({recorded.get('kind')} {recorded.get('path')})",
        f"sha256 `{recorded.get('sha256')}`; requirements: "
        f"{', '.join(recorded.get('requirements') or []) or 'none'}",
        "",
        f"{fence}python",
        str(recorded.get("source") or "").rstrip("\n"),
        fence,
        "",
    ]


def _swarm_lines(swarm: dict[str, Any]) -> list[str]:
    """Where a swarm build ran: cluster, node, service and the images by digest."""
    return [
        f"- swarm `{swarm.get('swarm_id')}`, node {swarm.get('node_hostname')} "
        f"(`{swarm.get('node_id')}`), service `{swarm.get('service_name')}`",
        f"- trainer image: `{swarm.get('trainer_image')}` (id `{swarm.get('image_id')}`)",
        f"- job image digest: `{swarm.get('job_image_digest')}`",
    ]
