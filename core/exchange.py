"""Export a version to one archive and import it elsewhere, verifying every digest."""

from __future__ import annotations

import hashlib
import json
import tempfile
import zipfile
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.artifacts import ArtifactStore
from core.errors import BadInput
from core.modelcard import model_card, model_card_markdown
from core.registry import Registry, version_dict
from core.schema import READY, ModelVersion

FORMAT = "altruism-lab-export/1"
MANIFEST = "manifest.json"
MEMBERS = ("artifact.joblib", "model_card.md", "model_card.json", "details.json")
MAX_ARCHIVE_BYTES = 1 << 30


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _record_sha(version: dict[str, Any]) -> str:
    """Digest of the manifest's version record (metrics, params, fingerprint, ...)."""
    return _sha(json.dumps(version, sort_keys=True, separators=(",", ":")).encode())


def export_version(
    row: ModelVersion, registry: Registry, store: ArtifactStore, output: Path
) -> dict[str, Any]:
    """Write artifact, model card, provenance, metrics and details into one zip archive."""
    if row.status != READY:
        raise BadInput(f"version {row.version} is {row.status}; only ready versions export")
    artifact = store.verify(row.artifact_sha256).read_bytes()
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
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST, json.dumps(manifest, indent=2, default=str))
        for name, data in files.items():
            archive.writestr(name, data)
    tmp.replace(output)
    return {"path": str(output), "version": row.version, "files": manifest["files"]}


def _read_archive(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    if not path.is_file():
        raise BadInput(f"archive not found: {path}")
    if path.stat().st_size > MAX_ARCHIVE_BYTES:
        raise BadInput(f"{path.name} is larger than {MAX_ARCHIVE_BYTES >> 20} MB")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            expected = {MANIFEST, *MEMBERS}
            if names != expected:
                raise BadInput(f"{path.name}: unexpected contents {sorted(names ^ expected)}")
            if sum(info.file_size for info in archive.infolist()) > MAX_ARCHIVE_BYTES:
                raise BadInput(f"{path.name} would unzip to more than {MAX_ARCHIVE_BYTES >> 20} MB")
            manifest = json.loads(archive.read(MANIFEST))
            data = {name: archive.read(name) for name in MEMBERS}
    except (
        zipfile.BadZipFile,
        zlib.error,  # a corrupted deflate stream
        EOFError,
        NotImplementedError,  # a corrupted compression method or version field
        RuntimeError,  # a corrupted flag claims encryption
        OSError,
        ValueError,  # includes JSONDecodeError and UnicodeDecodeError
        RecursionError,
    ) as exc:
        raise BadInput(f"{path.name} is not an Altruism Lab export ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BadInput(f"{path.name}: unknown export format")
    return manifest, data


def verify_archive(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Check every member's sha256 against the manifest; BadInput naming the first mismatch."""
    manifest, data = _read_archive(path)
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BadInput(f"{path.name}: the manifest lists no member digests")
    for name in MEMBERS:
        if _sha(data[name]) != files.get(name):
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
    if _sha(data["artifact.joblib"]) != version.get("artifact_sha256"):
        raise BadInput(
            f"{path.name}: the artifact does not match the version's recorded "
            "sha256; refusing to import"
        )
    card = json.loads(data["model_card.json"])
    if card.get("artifact", {}).get("sha256") != version.get("artifact_sha256"):
        raise BadInput(f"{path.name}: the model card and manifest disagree on the artifact")
    return manifest, data


def import_version(
    path: Path, registry: Registry, store: ArtifactStore, model: str | None = None
) -> ModelVersion:
    """Register a verified archive as a new ready version (never unpickles anything)."""
    manifest, data = verify_archive(path)
    source = manifest["version"]
    details = json.loads(data["details.json"])
    provenance = dict(source.get("provenance") or {})
    provenance["imported"] = {
        "from": path.name,
        "original_model": source.get("model"),
        "original_version": source.get("version"),
        "exported_at": manifest.get("exported_at"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        artifact = Path(tmp) / "artifact.joblib"
        artifact.write_bytes(data["artifact.joblib"])
        row = registry.create_version(
            model or source.get("model") or "raop",
            recipe=source["recipe"],
            params=source["params"],
            threshold=source["threshold"],
            builder=source["builder"],
            fingerprint=source["fingerprint"],
            data_path=provenance.get("data_path", ""),
            data_sha256=source["data_sha256"],
            split_seed=(provenance.get("split") or {}).get("seed", 0),
            split_test_size=(provenance.get("split") or {}).get("test_size", 0.0),
        )
        try:
            sha256, size = store.put_file(artifact)
            return registry.complete(
                row.id,
                metrics=source["metrics"],
                provenance=provenance,
                split_hash=source["split_hash"],
                artifact_sha256=sha256,
                artifact_size=size,
                details=details,
            )
        except BaseException as exc:
            registry.fail(row.id, f"import failed: {exc}")
            raise
