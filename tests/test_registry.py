"""The registry on SQLite and PostgreSQL: numbering, references, aliases, tags, notes,
pragmas and migrations."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from core.errors import BadInput, NotFound
from core.registry import Registry, check_name, version_dict
from core.schema import FAILED, QUEUED, READY

NEW_COLUMNS = {"worker_pid", "worker_host", "cancel_requested", "log_path", "reproduction"}

pytestmark = pytest.mark.both_backends


def add_version(
    registry: Registry,
    model: str = "raop",
    ready: bool = True,
    recipe: str = "nb-bow",
    split: str = "s" * 64,
):
    """A version row with made-up results (no training): for registry-only tests."""
    row = registry.create_version(
        model,
        recipe=recipe,
        params={"alpha": 1.0},
        threshold=0.5,
        builder="local",
        fingerprint="f" * 64,
        data_path="/nowhere/sample.json",
        data_sha256="d" * 64,
        split_seed=42,
        split_test_size=0.2,
    )
    if not ready:
        return registry.fail(row.id, "made to fail")
    return registry.complete(
        row.id,
        metrics={"roc_auc": 0.5 + row.version / 100},
        provenance={"builder": "local"},
        split_hash=split,
        artifact_sha256=f"{row.version:064x}",
        artifact_size=10,
        details={
            "curves": {},
            "test_ids": ["a", "b"],
            "test_labels": [0, 1],
            "test_probabilities": [0.2, 0.8],
        },
    )


def db_path(registry: Registry) -> Path:
    return Path(registry.url.split(":///", 1)[1])


# --- schema and pragmas --------------------------------------------------------------------
def test_new_registry_is_at_head(registry, lab, registry_backend):
    assert (lab / "registry.db").is_file() == (registry_backend == "sqlite")
    assert registry.head_revision() is not None
    assert registry.current_revision() == registry.head_revision()


@pytest.mark.sqlite_only
def test_file_database_uses_wal_and_foreign_keys(registry):
    with registry.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    # WAL is a property of the file: a plain sqlite3 connection sees it too
    with sqlite3.connect(db_path(registry)) as plain:
        assert plain.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_foreign_keys_are_enforced(registry):
    row = add_version(registry)
    with pytest.raises(sa.exc.IntegrityError), registry.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO tags (version_id, name) VALUES (9999, 'orphan')"))
    registry.add_tag(row.id, "kept")
    with registry.engine.begin() as conn:  # deleting a version cascades to tags and details
        conn.execute(sa.text("DELETE FROM model_versions WHERE id = :id"), {"id": row.id})
    with registry.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM tags").scalar() == 0
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM version_details").scalar() == 0


def test_migration_from_0001_keeps_rows(registry_backend):
    url = os.environ["REGISTRY_URL"]  # a fresh database, never opened
    old = Registry(url, migrate=False)
    assert old.current_revision() is None
    old.upgrade("0001")
    assert old.current_revision() == "0001"
    columns = {c["name"] for c in sa.inspect(old.engine).get_columns("model_versions")}
    assert not NEW_COLUMNS & columns
    created = "2025-01-02 03:04:05"
    with old.engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO models (id, name, created_at) VALUES (1, 'raop', :t)"),
            {"t": created},
        )
        conn.execute(
            sa.text(
                "INSERT INTO model_versions (id, model_id, version, status, created_at, recipe,"
                " params, threshold, builder, fingerprint, data_path, data_sha256, split_seed,"
                " split_test_size, split_hash, metrics, provenance, artifact_sha256, note)"
                " VALUES (1, 1, 1, 'ready', :t, 'nb-bow', :params, 0.5, 'local', :fp, '/d.json',"
                " :data, 42, 0.2, :split, :metrics, '{}', :art, 'from 0001')"
            ),
            {
                "t": created,
                "params": json.dumps({"alpha": 0.5}),
                "fp": "f" * 64,
                "data": "d" * 64,
                "split": "s" * 64,
                "metrics": json.dumps({"roc_auc": 0.71}),
                "art": "a" * 64,
            },
        )
        conn.execute(
            sa.text(
                "INSERT INTO version_details (version_id, curves, test_ids, test_labels,"
                " test_probabilities) VALUES (1, '{}', '[\"x\"]', '[1]', '[0.9]')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO aliases (id, model_id, name, version_id, updated_at)"
                " VALUES (1, 1, 'champion', 1, :t)"
            ),
            {"t": created},
        )
        conn.execute(sa.text("INSERT INTO tags (version_id, name) VALUES (1, 'baseline')"))
        if registry_backend == "postgresql":  # explicit ids do not move PostgreSQL's sequences
            for table in ("models", "model_versions", "aliases"):
                conn.execute(
                    sa.text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                        f" (SELECT max(id) FROM {table}))"
                    )
                )
    old.engine.dispose()

    upgraded = Registry(url)  # migrates to head on open
    assert upgraded.current_revision() == upgraded.head_revision()
    assert upgraded.head_revision() != "0001"
    columns = {c["name"] for c in sa.inspect(upgraded.engine).get_columns("model_versions")}
    assert columns >= NEW_COLUMNS
    row = upgraded.resolve(1)
    assert (row.recipe, row.params, row.note) == ("nb-bow", {"alpha": 0.5}, "from 0001")
    # 0006: the old version keeps its threshold, labelled as chosen before operating points
    legacy = "fixed:0.5 (before operating points)"
    assert row.metrics == {"roc_auc": 0.71, "threshold_policy": legacy}
    assert (row.threshold, row.threshold_policy, row.flags) == (0.5, legacy, [])
    assert row.cancel_requested is False and row.worker_pid is None
    # rows of the tables hanging off model_versions survive the table rebuild too
    assert upgraded.resolve("champion").id == row.id
    assert [t.name for t in row.tags] == ["baseline"]
    details = upgraded.details(row.id)  # JSON lists packed by 0005, values unchanged
    assert (details.test_ids, details.test_labels, details.test_probabilities) == (
        ["x"],
        [1],
        [0.9],
    )
    if registry_backend == "sqlite":
        with upgraded.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
    size = sa.inspect(upgraded.engine).get_columns("model_versions")
    assert isinstance({c["name"]: c["type"] for c in size}["artifact_size"], sa.BigInteger)
    # 0008: old rows have no known actor; the alias's history starts from its last move
    assert (row.created_by, row.archived_by, row.archived_at) == (None, None, None)
    # 0009: no lease on old rows (judged by pid on their own host, as before)
    assert (row.lease_holder, row.lease_renewed_at, row.lease_expires_at) == (None, None, None)
    assert upgraded.changes(row.id) == []  # no change of an old version is made up
    (span,) = upgraded.alias_history("champion")
    assert (span["version"], span["how"], span["set_by"], span["until"]) == (
        1,
        "recorded",
        None,
        None,
    )
    assert span["from"].startswith("2025-01-02T03:04:05")
    # and the upgraded registry keeps numbering after the old row
    assert add_version(upgraded).version == 2


def test_migrations_build_exactly_the_schema_the_models_declare(registry):
    """Alembic's autogenerate comparison finds nothing to add, drop or retype (columns,
    types such as the 64-bit artifact size, indexes) on this backend."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from core.schema import Base

    with registry.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert differences == []


def test_upgrade_to_head_is_idempotent(registry):
    add_version(registry)
    registry.upgrade()
    again = Registry(registry.url)
    assert again.current_revision() == again.head_revision()
    assert [v.version for v in again.list_versions()] == [1]


# --- numbering and references --------------------------------------------------------------
def test_version_numbers_are_monotonic_per_model(registry):
    numbers = [add_version(registry, ready=i != 1).version for i in range(4)]
    assert numbers == [1, 2, 3, 4]
    assert add_version(registry, model="other").version == 1
    assert add_version(registry).version == 5
    assert [v.version for v in registry.list_versions()] == [5, 4, 3, 2, 1]
    assert [v.version for v in registry.list_versions("other")] == [1]
    assert registry.model_names() == ["other", "raop"]


def test_an_artifact_over_4_gib_is_recorded(registry):
    """artifact_size is 64-bit on every backend (a 32-bit column fails on PostgreSQL)."""
    row = add_version(registry)
    big = 5 * 2**30
    with registry.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE model_versions SET artifact_size = :size WHERE id = :id"),
            {"size": big, "id": row.id},
        )
    assert registry.get_by_id(row.id).artifact_size == big


def test_resolve_by_number_latest_and_alias(registry):
    v1, v2 = add_version(registry), add_version(registry)
    v3 = add_version(registry, ready=False)
    assert registry.resolve(1).id == v1.id
    assert registry.resolve("2").id == v2.id
    assert registry.resolve(" 3 ").id == v3.id
    assert registry.resolve("latest").id == v2.id  # newest *ready* version
    registry.promote(1, "champion")
    assert registry.resolve("champion").id == v1.id
    assert registry.resolve("Champion").id == v1.id
    for missing in ("4", "nope"):
        with pytest.raises(NotFound, match=missing):
            registry.resolve(missing)
    with pytest.raises(NotFound, match="no model"):
        registry.resolve(1, model="ghost")


def test_promote_moves_an_alias(registry):
    v1, v2 = add_version(registry), add_version(registry)
    registry.promote(v1.version, "champion")
    registry.promote(v2.version, "challenger")
    assert registry.aliases_by_version() == {v1.id: ["champion"], v2.id: ["challenger"]}
    registry.promote(v2.version, "champion")
    assert registry.resolve("champion").id == v2.id
    assert registry.aliases_by_version() == {v2.id: ["challenger", "champion"]}
    with registry.engine.connect() as conn:
        count = "SELECT COUNT(*) FROM aliases WHERE name = 'champion'"
        assert conn.exec_driver_sql(count).scalar() == 1
    assert version_dict(registry.get_by_id(v2.id), ["champion"])["aliases"] == ["champion"]
    registry.remove_alias("challenger")
    assert registry.aliases_by_version() == {v2.id: ["champion"]}


def test_promote_refuses_unready_versions_and_bad_names(registry):
    add_version(registry)
    failed = add_version(registry, ready=False)
    with pytest.raises(BadInput, match="failed"):
        registry.promote(failed.version, "champion")
    for bad in ("latest", "12", "has space", "", "x" * 101):
        with pytest.raises(BadInput):
            registry.promote(1, bad)
    assert registry.aliases_by_version() == {}
    assert check_name("alias", " Prod.v2 ") == "prod.v2"


def test_tags_and_notes(registry):
    row = add_version(registry)
    registry.add_tag(row.id, "baseline")
    registry.add_tag(row.id, "Sample")
    registry.add_tag(row.id, "baseline")  # idempotent
    assert [t.name for t in registry.get_by_id(row.id).tags] == ["baseline", "sample"]
    registry.remove_tag(row.id, "baseline")
    assert [t.name for t in registry.get_by_id(row.id).tags] == ["sample"]
    with pytest.raises(BadInput):
        registry.add_tag(row.id, "no/slashes")
    registry.set_note(row.id, "first try on the sample")
    assert registry.get_by_id(row.id).note == "first try on the sample"
    registry.set_note(row.id, "")
    assert registry.get_by_id(row.id).note is None
    with pytest.raises(BadInput, match="10,000"):
        registry.set_note(row.id, "x" * 10_001)


def test_complete_and_fail_record_results(registry):
    row = registry.create_version(
        "raop",
        recipe="nb-bow",
        params={},
        threshold=0.5,
        builder="local",
        fingerprint="f" * 64,
        data_path="/d.json",
        data_sha256="d" * 64,
        split_seed=1,
        split_test_size=0.2,
    )
    assert row.status == QUEUED and row.artifact_sha256 is None
    assert registry.find_ready("raop", "f" * 64) is None
    done = add_version(registry)
    assert done.status == READY and registry.details(done.id).test_ids == ["a", "b"]
    assert registry.find_ready("raop", "f" * 64).id == done.id
    failed = registry.fail(row.id, "boom", log_tail="last lines")
    assert (failed.status, failed.error, failed.log_tail) == (FAILED, "boom", "last lines")
    assert failed.finished_at is not None


def test_per_request_results_are_stored_packed_and_exact(registry):
    """Ids, labels and probabilities go in compact binary columns and come back exactly."""
    from core import packing
    from core.schema import VersionDetail

    row = add_version(registry)
    ids = [f"t3_{i:05x}é" for i in range(3245)]
    labels = [i % 4 == 0 for i in range(3245)]
    probabilities = [i / 3245 + 1e-12 for i in range(3245)]
    with registry.session(write=True) as session:
        session.merge(
            VersionDetail(
                version_id=row.id, curves={}, test_ids=ids, test_labels=labels,
                test_probabilities=probabilities,
            )
        )  # fmt: skip
    details = registry.details(row.id)
    assert details.test_ids == ids and details.test_probabilities == probabilities
    assert details.test_labels == [int(v) for v in labels]
    with registry.engine.connect() as conn:
        stored = conn.exec_driver_sql(
            "SELECT test_ids_packed, test_labels_packed, test_probabilities_packed"
            " FROM version_details"
        ).one()
    as_json = len(json.dumps(ids)) + len(json.dumps(labels)) + len(json.dumps(probabilities))
    packed = sum(len(bytes(blob)) for blob in stored)
    assert packed < as_json / 2, (packed, as_json)
    assert bytes(stored[2]) == packing.pack_floats(probabilities)
    with pytest.raises(ValueError, match="not a packed"):
        packing.unpack_floats(packing.pack_labels([1, 0]))
