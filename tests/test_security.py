"""Security properties (docs/security.md): what is refused, and proof that it is refused early.

* artifacts: a tampered (bytes flipped) or swapped (another file's content) artifact is
  refused before unpickling, proven with a pickle that would create a marker when loaded;
  `check` reports it as `tampered_artifact`;
* paths: dataset names from the form resolve only inside the data folder;
* uploads: over UPLOAD_LIMIT_MB or invalid, refused with nothing stored;
* shell: user strings never reach a shell; the Docker build context is the project's own;
* HTML: notes are stored verbatim and rendered as text; tags are restricted;
* login: with DASHBOARD_PASSWORD set, nothing but the sign-in form until the right password;
* export/import: round trip keeps sha256 and metrics; any modified byte is refused (exit 2).
"""

from __future__ import annotations

import ast
import io
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import joblib
import pytest

from core import builds
from core.artifacts import ArtifactStore, open_store
from core.builders.docker import DockerBuilder
from core.config import PROJECT_ROOT
from core.datafiles import list_data_files, resolve_data_file, save_upload
from core.errors import BadInput, IntegrityError
from core.predict import load_model
from core.registry import Registry
from tests.conftest import SAMPLE
from tests.helpers import ROOT, artifact_files, run_cli, use_lab

NO_ENGINE = {"DOCKER_HOST": "unix:///tmp/altruism-lab-nonexistent.sock"}
HTML = '<script>alert("x")</script><img src=x onerror=alert(1)> **bold** [link](javascript:x)'


# --- fixtures: two ready versions, built once, copied into each test's lab ------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("security-lab")
    with pytest.MonkeyPatch.context() as mp:
        use_lab(mp.setenv, home)
        registry = Registry()
        for seed in (1, 2):
            request = builds.TrainRequest(
                recipe="nb-bow", backend="local", seed=seed, data_path=SAMPLE
            )
            row, _ = builds.train(request, registry)
            assert row.status == "ready", row.error
        registry.engine.dispose()  # checkpoint the WAL so the file can be copied
    return home


@pytest.fixture
def two(built: Path, lab: Path) -> tuple[Registry, ArtifactStore, list[Any]]:
    """This test's registry and store, holding versions 1 and 2 (different artifacts)."""
    shutil.copy2(built / "registry.db", lab / "registry.db")
    shutil.copytree(built / "artifacts", lab / "artifacts")
    registry = Registry()
    rows = [registry.resolve(1), registry.resolve(2)]
    assert rows[0].artifact_sha256 != rows[1].artifact_sha256
    return registry, open_store(), rows


class MarkerPickle:
    """Unpickling this runs os.makedirs(marker): proof that a load happened."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.makedirs, (self.marker,)


def one_line_error(done: Any) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def assert_check_reports_tampering(version: int) -> None:
    done = run_cli("check", "--json", env=NO_ENGINE)
    assert done.returncode == 1, done.stdout
    findings = json.loads(done.stdout)["findings"]
    assert [(f["kind"], f["version"]) for f in findings] == [("tampered_artifact", version)]


# --- artifacts -----------------------------------------------------------------------------
def test_tampered_artifact_is_refused(two: tuple) -> None:
    _, store, (v1, _) = two
    path = store.local_path(v1.artifact_sha256)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip one byte in the middle
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))

    with pytest.raises(IntegrityError, match="refusing to unpickle"):
        store.load(v1.artifact_sha256)
    assert store.verify(v1.artifact_sha256) == "tampered"
    with pytest.raises(IntegrityError):
        load_model(v1, store)
    done = run_cli("predict", "1", "--title", "t", "--text", "pizza", env=NO_ENGINE)
    assert done.returncode == 1
    assert "modified in the store" in one_line_error(done)
    exported = run_cli("export", "1", "-o", str(store.root.parent / "v1.zip"), env=NO_ENGINE)
    assert exported.returncode == 1 and "modified in the store" in exported.stderr
    assert_check_reports_tampering(1)


def test_swapped_artifact_is_refused(two: tuple) -> None:
    _, store, (v1, v2) = two
    other = store.local_path(v2.artifact_sha256).read_bytes()
    store.local_path(v1.artifact_sha256).write_bytes(other)  # a valid model, but not v1's
    with pytest.raises(IntegrityError, match="refusing to unpickle"):
        store.load(v1.artifact_sha256)
    done = run_cli("predict", "1", "--title", "t", "--text", "pizza", env=NO_ENGINE)
    assert done.returncode == 1 and "refusing to unpickle" in one_line_error(done)
    assert load_model(v2, store) is not None  # the other version is unaffected
    assert_check_reports_tampering(1)


def test_malicious_pickle_is_never_unpickled(two: tuple, tmp_path: Path) -> None:
    _, store, (v1, _) = two
    evil = io.BytesIO()
    joblib.dump(MarkerPickle(tmp_path / "control-marker"), evil)
    # Control: this pickle really does run code when it is loaded.
    joblib.load(io.BytesIO(evil.getvalue()))
    assert (tmp_path / "control-marker").is_dir()

    marker = tmp_path / "marker"
    payload = joblib_bytes(MarkerPickle(marker))
    store.local_path(v1.artifact_sha256).write_bytes(payload)
    with pytest.raises(IntegrityError):
        store.load(v1.artifact_sha256)
    with pytest.raises(IntegrityError):
        load_model(v1, store)
    done = run_cli("predict", "1", "--title", "t", "--text", "pizza", env=NO_ENGINE)
    assert done.returncode == 1 and "refusing to unpickle" in one_line_error(done)
    evaluated = run_cli("evaluate", "1", "--data", str(SAMPLE), env=NO_ENGINE)
    assert evaluated.returncode == 1 and "refusing to unpickle" in evaluated.stderr
    assert not marker.exists(), "the swapped-in pickle was loaded"
    assert_check_reports_tampering(1)
    assert not marker.exists()


def joblib_bytes(value: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(value, buffer)
    return buffer.getvalue()


# --- dataset paths -------------------------------------------------------------------------
@pytest.fixture
def data_dir(lab: Path, tmp_path: Path) -> Path:
    root = lab / "data"
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(SAMPLE, outside / "secret.json")
    (root / "sub").mkdir()
    shutil.copy(SAMPLE, root / "sub" / "nested.json")
    (root / "passwd.json").symlink_to("/etc/passwd")
    (root / "secret.json").symlink_to(outside / "secret.json")
    (root / "elsewhere").symlink_to(outside, target_is_directory=True)
    (root / "alias.json").symlink_to(root / "sample.json")  # a link inside is fine
    return root


@pytest.mark.parametrize(
    "name",
    [
        "../sample.json",
        "sub/../../registry.db",
        "/etc/passwd",
        str(SAMPLE),  # absolute, even to a real dataset
        "passwd.json",  # symlink to /etc/passwd
        "secret.json",  # symlink to a dataset outside the folder
        "elsewhere/secret.json",  # through a symlinked directory
        "",
        "sample.json\x00.txt",
        "missing.json",
        "sub",
    ],
)
def test_dataset_names_resolve_only_inside_the_data_folder(data_dir: Path, name: str) -> None:
    with pytest.raises(BadInput):
        resolve_data_file(name)


def test_data_folder_listing_offers_no_escaping_symlink(data_dir: Path) -> None:
    offered = list_data_files()
    assert offered == ["sub/nested.json"], offered  # the bundled sample has its own choice
    assert not any("passwd" in name or "secret" in name for name in offered)
    assert resolve_data_file("sub/nested.json") == (data_dir / "sub" / "nested.json").resolve()
    assert resolve_data_file("alias.json") == (data_dir / "sample.json").resolve()


# --- uploads -------------------------------------------------------------------------------
def test_upload_over_the_limit_is_refused(lab: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPLOAD_LIMIT_MB", "0.05")  # 50 KB; the sample is ~400 KB
    content = SAMPLE.read_bytes()
    assert len(content) > 0.05 * 1024 * 1024
    with pytest.raises(BadInput, match=r"the limit is 0\.05 MB"):
        save_upload("train.json", content)
    uploads = lab / "data" / "uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []


@pytest.mark.parametrize(
    ("filename", "content", "message"),
    [
        ("train.json", b"not json", "not valid JSON"),
        ("train.exe", b"[]", "must be .json, .jsonl or .zip"),
        ("train.zip", b"PK\x03\x04 broken", "not a valid zip"),
        ("train.json", json.dumps([{"request_id": "x"}]).encode(), "request_title"),
    ],
)
def test_invalid_upload_stores_nothing(lab: Path, filename: str, content: bytes, message: str):
    with pytest.raises(BadInput, match=message):
        save_upload(filename, content)
    uploads = lab / "data" / "uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []


def test_zip_bomb_upload_is_refused_before_inflating(
    lab: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small zip may expand to gigabytes: the declared size is checked before reading."""
    import core.dataset

    monkeypatch.setattr(core.dataset, "MAX_DATA_BYTES", 1 << 20)
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("train.json", "[" + " " * (2 << 20) + "]")  # 2 MB -> ~2 KB
    assert len(bomb.getvalue()) < 10_000
    with pytest.raises(BadInput, match="would unzip to 2 MB; the limit is 1 MB"):
        save_upload("bomb.zip", bomb.getvalue())
    uploads = lab / "data" / "uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []


def test_upload_names_cannot_escape(lab: Path) -> None:
    path, dataset = save_upload("../../../etc/cron.d/evil; rm -rf ~.json", SAMPLE.read_bytes())
    assert path.parent == lab / "data" / "uploads"
    assert path.name.startswith("evil_rm_-rf_-") and path.suffix == ".json"
    assert dataset.rows == 400
    assert [p.name for p in (lab / "data" / "uploads").iterdir()] == [path.name]


# --- no shell, no user-chosen build context ------------------------------------------------
SOURCE_FILES = sorted(
    [
        *(ROOT / "core").rglob("*.py"),
        *(ROOT / "ui").rglob("*.py"),
        *(ROOT / "pages").glob("*.py"),
        ROOT / "app.py",
    ]
)
SUBPROCESS_CALLS = {"run", "Popen", "call", "check_call", "check_output"}


def test_no_shell_anywhere() -> None:
    offenders = []
    for path in SOURCE_FILES:
        text = path.read_text()
        for needle in ("shell=True", "os.system", "os.popen", "getoutput", "pty.spawn"):
            if needle in text:
                offenders.append(f"{path.relative_to(ROOT)}: {needle}")
        for node in ast.walk(ast.parse(text)):
            called = node.func if isinstance(node, ast.Call) else None
            if isinstance(called, ast.Name) and called.id in ("eval", "exec"):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.func.id}")
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            owner = node.func.value
            if not (isinstance(owner, ast.Name) and owner.id == "subprocess"):
                continue
            if node.func.attr in SUBPROCESS_CALLS and not isinstance(node.args[0], ast.List):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: argv is not a list")
    assert offenders == []


def test_docker_build_context_comes_only_from_the_project() -> None:
    import dataclasses

    from core.builders.base import BuildJob
    from core.builders.select import get_builder

    request_fields = {f.name for f in dataclasses.fields(builds.TrainRequest)}
    job_fields = {f.name for f in dataclasses.fields(BuildJob)}
    for fields in (request_fields, job_fields):
        assert not fields & {"context", "dockerfile", "build_context", "image", "base_image"}
    assert get_builder("docker").context == PROJECT_ROOT
    assert DockerBuilder().context == PROJECT_ROOT
    source = (ROOT / "core" / "builders" / "docker.py").read_text()
    assert 'dockerfile="Dockerfile"' in source and "path=str(self.context)" in source
    assert 'network_mode="none"' in source  # training sandbox: no network...
    assert "volumes=" not in source and "mounts=" not in source  # ...and no host folder
    assert "USER trainer" in (ROOT / "Dockerfile").read_text()  # not root in the container


def test_fault_hooks_are_inert_without_the_test_switch(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ALTRUISM_ALLOW_FAULTS")
    request = builds.TrainRequest(recipe="nb-bow", backend="local", fault="raise")
    row, _ = builds.train(request, registry)
    assert row.status == "ready", row.error


# --- HTML in notes and tags ----------------------------------------------------------------
def test_html_notes_are_stored_verbatim_and_tags_restricted(two: tuple) -> None:
    registry, _, (v1, _) = two
    registry.set_note(v1.id, HTML)
    assert registry.get_by_id(v1.id).note == HTML
    for tag in ("<b>x</b>", "a b", "x" * 101, "<script>"):
        with pytest.raises(BadInput):
            registry.add_tag(v1.id, tag)
    assert registry.get_by_id(v1.id).tags == []


def test_versions_page_renders_notes_and_tags_as_text() -> None:
    """Static: the note and the tags reach the page only through st.text; no raw HTML."""
    source = (ROOT / "pages" / "2_Versions.py").read_text()
    tree = ast.parse(source)
    shown = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "st"
        and any("row.note" in ast.unparse(a) or "row.tags" in ast.unparse(a) for a in node.args)
    ]
    assert {n.func.attr for n in shown} <= {"text", "text_area"}, [ast.unparse(n) for n in shown]
    assert {n.func.attr for n in shown} >= {"text"}
    for path in SOURCE_FILES:
        assert "unsafe_allow_html" not in path.read_text(), path


def test_versions_page_shows_html_note_as_text(two: tuple) -> None:
    from streamlit.testing.v1 import AppTest

    registry, _, (v1, _) = two
    registry.set_note(v1.id, HTML)
    at = AppTest.from_file(str(ROOT / "pages" / "2_Versions.py"), default_timeout=60)
    at.query_params["v"] = "1"
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert f"Note: {HTML}" in [t.value for t in at.text]
    rendered = [m.value for m in at.markdown] + [c.value for c in at.caption]
    assert not any("<script" in value or "onerror" in value for value in rendered)


# --- dashboard login -----------------------------------------------------------------------
def test_dashboard_login_gate(two: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    registry, _, _ = two
    registry.promote(1, "champion")
    monkeypatch.setenv("DASHBOARD_PASSWORD", "correct horse")
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE["DOCKER_HOST"])
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception, [e.message for e in at.exception]

    def locked() -> None:
        assert [t.value for t in at.title] == ["Altruism Lab"]
        assert [t.label for t in at.text_input] == ["Your name", "Team password"]
        assert not at.subheader and not at.metric and not at.dataframe and not at.table
        assert "champion" not in json.dumps([m.value for m in at.markdown]).lower()

    locked()
    at.text_input[1].input("wrong")
    at.button[0].click().run()
    assert [e.value for e in at.error] == ["Wrong password."]
    locked()

    at.text_input[0].input("  Ann   Lee ")
    at.text_input[1].input("correct horse")
    at.button[0].click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert "Team password" not in [t.label for t in at.text_input]
    assert at.subheader and at.metric  # the Home page and the champion's numbers
    assert at.session_state["login_name"] == "Ann Lee"  # recorded with what they change


# --- export / import -----------------------------------------------------------------------
@pytest.fixture
def exported(two: tuple, lab: Path) -> Path:
    from core.exchange import export_version

    registry, store, (v1, _) = two
    return Path(export_version(v1, registry, store, lab / "v1.zip")["path"])


def test_export_import_round_trip(two: tuple, lab: Path) -> None:
    _, store, (v1, _) = two
    archive = lab / "exported" / "v1.zip"
    done = run_cli("export", "1", "-o", str(archive), "--json", env=NO_ENGINE)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["files"]["artifact.joblib"] == v1.artifact_sha256
    done = run_cli("import", str(archive), "--json", env=NO_ENGINE)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["version"] == 3 and out["status"] == "ready"
    assert out["artifact_sha256"] == v1.artifact_sha256
    assert out["metrics"] == v1.metrics
    assert out["params"] == v1.params and out["fingerprint"] == v1.fingerprint
    assert out["provenance"]["imported"]["original_version"] == 1
    assert store.verify(out["artifact_sha256"]) == "ok"
    assert run_cli("check", env=NO_ENGINE).returncode == 0


def rewrite(archive: Path, target: Path, member: str, change) -> None:
    """Copy `archive` to `target` with `member`'s bytes replaced by change(bytes)."""
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(target, "w") as out:
        for info in source.infolist():
            data = source.read(info.filename)
            out.writestr(info, change(data) if info.filename == member else data)


def flip_one_byte(data: bytes) -> bytes:
    """Change one byte in the middle (a digit for digits, so JSON stays valid JSON)."""
    index = len(data) // 2
    original = chr(data[index])
    while True:  # walk to a digit or letter so the change is meaningful, not whitespace
        if original.isalnum():
            break
        index += 1
        original = chr(data[index])
    replacement = ("1" if original != "1" else "2") if original.isdigit() else "Z"
    return data[:index] + replacement.encode() + data[index + 1 :]


def assert_refused(archive: Path, registry: Registry) -> str:
    before = len(registry.all_versions())
    done = run_cli("import", str(archive), env=NO_ENGINE)
    assert done.returncode == 2, done.stderr
    line = one_line_error(done)
    assert len(registry.all_versions()) == before, "a refused import registered a version"
    return line


MEMBERS = ["manifest.json", "artifact.joblib", "model_card.md", "model_card.json", "details.json"]


@pytest.mark.parametrize("member", MEMBERS)
def test_import_refuses_one_modified_byte_in_any_member(
    two: tuple, exported: Path, lab: Path, member: str
) -> None:
    registry, _, _ = two
    artifacts_before = artifact_files(lab)
    tampered = lab / f"tampered-{member}.zip"
    rewrite(exported, tampered, member, flip_one_byte)
    assert_refused(tampered, registry)
    assert artifact_files(lab) == artifacts_before


@pytest.mark.parametrize(
    "field",
    ["metrics", "params", "recipe", "threshold", "fingerprint", "data_sha256", "split_hash"],
)
def test_import_refuses_a_manifest_edited_to_lie(
    two: tuple, exported: Path, lab: Path, field: str
) -> None:
    """The manifest's version record must agree with the digest-covered members."""
    registry, _, _ = two

    def edit(data: bytes) -> bytes:
        manifest = json.loads(data)
        version = manifest["version"]
        version[field] = {
            "metrics": {**(version["metrics"] or {}), "roc_auc": 0.999},
            "params": {**version["params"], "alpha": 99.0},
            "recipe": "tfidf-logreg",
            "threshold": 0.1,
            "fingerprint": "0" * 64,
            "data_sha256": "0" * 64,
            "split_hash": "0" * 64,
        }[field]
        return json.dumps(manifest, indent=2).encode()

    tampered = lab / f"lying-{field}.zip"
    rewrite(exported, tampered, "manifest.json", edit)
    assert_refused(tampered, registry)


def members_of(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_import_refuses_every_corrupting_byte_flip(two: tuple, exported: Path, lab: Path):
    """Flip each byte of the archive file in turn (in process: thousands of archives): the
    import is refused with BadInput, or the flip hit zip metadata only (timestamps, version
    fields, deflate padding) and every member's bytes are unchanged."""
    from core.exchange import verify_archive

    data = exported.read_bytes()
    original = members_of(data)
    outcomes: dict[str, int] = {"refused": 0, "metadata only": 0}
    candidate = lab / "flipped.zip"
    for index in range(len(data)):
        flipped = bytearray(data)
        flipped[index] ^= 0x01 if index % 2 else 0x80
        candidate.write_bytes(bytes(flipped))
        try:
            verify_archive(candidate)
        except BadInput:
            outcomes["refused"] += 1
            continue
        assert members_of(bytes(flipped)) == original, f"byte {index} changed a member"
        outcomes["metadata only"] += 1
    print(f"\nbyte flips of a {len(data)}-byte archive: {outcomes}")
    assert outcomes["refused"] > 0.9 * len(data)


@pytest.mark.parametrize("offset", [0.02, 0.5, 0.98])
def test_cli_import_refuses_a_corrupted_archive_file(
    two: tuple, exported: Path, lab: Path, offset: float
) -> None:
    registry, _, _ = two
    data = bytearray(exported.read_bytes())
    data[int(len(data) * offset)] ^= 0x55
    corrupted = lab / f"corrupted-{offset}.zip"
    corrupted.write_bytes(bytes(data))
    assert_refused(corrupted, registry)


def test_import_refuses_an_archive_that_would_unzip_too_large(
    two: tuple, exported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.exchange

    with zipfile.ZipFile(exported) as archive:
        unzipped = sum(info.file_size for info in archive.infolist())
    assert exported.stat().st_size < unzipped
    monkeypatch.setattr(core.exchange, "MAX_ARCHIVE_BYTES", unzipped - 1)
    with pytest.raises(BadInput, match="would unzip to more than"):
        core.exchange.verify_archive(exported)


def test_import_refuses_extra_or_missing_members(two: tuple, exported: Path, lab: Path) -> None:
    registry, _, _ = two
    extra = lab / "extra.zip"
    shutil.copy(exported, extra)
    with zipfile.ZipFile(extra, "a") as archive:
        archive.writestr("../../evil.py", "print('hi')")
    assert "unexpected contents" in assert_refused(extra, registry)


# --- hostile archives: self-consistent (every digest resealed), yet lying ------------------
def reseal(
    archive: Path,
    target: Path,
    edit: Any = None,
    artifact: bytes | None = None,
) -> Path:
    """Copy `archive` with its version record edited and every digest recomputed, as an
    attacker who controls the whole file would."""
    from core.exchange import _record_sha, _sha

    with zipfile.ZipFile(archive) as source:
        members = {name: source.read(name) for name in source.namelist()}
    manifest = json.loads(members.pop("manifest.json"))
    if artifact is not None:
        members["artifact.joblib"] = artifact
        manifest["version"]["artifact_sha256"] = _sha(artifact)
        card = json.loads(members["model_card.json"])
        card["artifact"]["sha256"] = _sha(artifact)
        members["model_card.json"] = json.dumps(card).encode()
    if edit is not None:
        edit(manifest["version"])
    manifest["version_sha256"] = _record_sha(manifest["version"])
    manifest["files"] = {name: _sha(data) for name, data in members.items()}
    with zipfile.ZipFile(target, "w") as out:
        out.writestr("manifest.json", json.dumps(manifest))
        for name, data in members.items():
            out.writestr(name, data)
    return target


def _set(path: str, value: Any):
    def edit(version: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = version
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value

    return edit


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("recipe", "[click](https://evil.example) ![x](https://evil.example/i.png)", "recipe"),
        ("builder", "**docker** ![x](https://evil.example/i.png)", "builder"),
        ("metrics", {}, "metric"),
        ("metrics.roc_auc", "oops", "metric roc_auc"),
        ("metrics.f1", 7.5, "metric f1"),
        ("threshold", "0.5); DROP TABLE model_versions; --", "threshold"),
        ("threshold", float("nan"), "threshold"),
        ("provenance.docker.image_id", "busybox:latest", "image id"),
        ("params.alpha", "1; rm -rf /", "parameters"),
        ("status", "queued", "status"),
        ("data_sha256", "../../etc/passwd", "dataset digest"),
    ],
)
def test_import_validates_the_whole_record(
    two: tuple, exported: Path, lab: Path, path: str, value: Any, message: str
) -> None:
    """A resealed archive passes every digest check; validation still refuses the lie,
    in one line, without echoing SQL, and without storing anything."""
    registry, _, _ = two

    def edit(version: dict[str, Any]) -> None:
        if path.startswith("provenance.docker"):
            version["builder"] = "docker"
        _set(path, value)(version)

    hostile = reseal(exported, lab / "hostile.zip", edit)
    before = artifact_files(lab)
    line = assert_refused(hostile, registry)
    assert message in line, line
    assert "SELECT" not in line and "INSERT" not in line
    assert artifact_files(lab) == before


def test_imported_fingerprint_is_recomputed_and_never_reused(
    two: tuple, exported: Path, lab: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An archive claiming the fingerprint of a request, with a planted model, is marked
    imported; a later identical `train` builds its own version instead of returning it."""
    marker = lab / "unpickled"
    planted = io.BytesIO()
    joblib.dump(MarkerPickle(marker), planted)
    hostile = reseal(
        exported,
        lab / "planted.zip",
        _set("fingerprint", "f" * 64),
        artifact=planted.getvalue(),
    )
    fresh = lab / "fresh"
    fresh.mkdir()
    monkeypatch.setenv("REGISTRY_URL", f"sqlite:///{fresh / 'registry.db'}")
    done = run_cli("import", str(hostile), "--json", env={
        **NO_ENGINE, "REGISTRY_URL": f"sqlite:///{fresh / 'registry.db'}"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    imported = json.loads(done.stdout)
    assert imported["imported"] is True and imported["data_kind"] == "imported"
    assert imported["fingerprint"] != "f" * 64
    registry = Registry()
    assert registry.resolve(1).data_path == ""  # the archive's path is never reused
    request = builds.TrainRequest(recipe="nb-bow", backend="local", seed=1, data_path=SAMPLE)
    row, submission = builds.train(request, registry)
    assert not submission.reused and row.status == "ready", row.error
    assert row.version == 2 and row.artifact_sha256 != imported["artifact_sha256"]
    assert not marker.exists(), "the planted model was unpickled"
    result = builds.reproduce(registry.resolve(1), registry)  # rebuilds; never loads it
    assert result["artifact_identical"] is False
    assert not marker.exists()
