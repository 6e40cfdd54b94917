"""Who did what (issue 25, item 7): versions record who queued and archived them, and every
alias move is kept with its actor, also when several processes promote at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from core.actor import current_actor
from core.registry import Registry
from tests.helpers import ROOT, run_cli
from tests.test_registry import add_version

pytestmark = pytest.mark.both_backends
PROMOTERS = 6


def test_history_records_who_trained_promoted_and_archived(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALTRUISM_ACTOR", "alice")
    first = add_version(registry)
    registry.promote(first.version)
    monkeypatch.setenv("ALTRUISM_ACTOR", "bob")
    second = add_version(registry)
    registry.promote(second.version)
    registry.set_archived(second.id, actor="carol (dashboard)")  # a dashboard login wins

    assert registry.get_by_id(first.id).created_by == "alice"
    registry.add_tag(first.id, "baseline")
    registry.set_note(first.id, "the first try", actor="erin")
    registry.remove_tag(first.id, "baseline", actor="erin")
    changes = [(c["action"], c["detail"], c["actor"]) for c in registry.changes(first.id)]
    assert changes == [
        ("queued", None, "alice"),
        ("tag", "baseline", "bob"),
        ("note", None, "erin"),
        ("untag", "baseline", "erin"),
    ]
    archived = registry.get_by_id(second.id)
    assert (archived.created_by, archived.archived_by) == ("bob", "carol (dashboard)")
    assert archived.archived_at is not None
    spans = registry.alias_history("champion")
    assert [(s["version"], s["set_by"], s["ended_by"], s["ended_how"]) for s in spans] == [
        (first.version, "alice", "bob", "promote"),
        (second.version, "bob", "carol (dashboard)", "archive"),
    ]
    assert spans[0]["until"] == spans[1]["from"] and spans[1]["until"] is not None

    monkeypatch.setenv("ALTRUISM_ACTOR", "dave")
    done = run_cli("history", "champion", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == spans
    table = run_cli("history", "champion")
    assert "carol (dashboard) (archive)" in table.stdout, table.stdout
    shown = run_cli("show", str(second.version), "--json")
    assert json.loads(shown.stdout)["created_by"] == "bob"
    assert json.loads(shown.stdout)["archived_by"] == "carol (dashboard)"
    from core.cli import render_show

    text = render_show({**json.loads(shown.stdout), "metrics": None})  # made-up metrics
    assert "created by: bob" in text and "archived by: carol (dashboard)" in text
    assert "archive by carol (dashboard)" in text
    listed = json.loads(run_cli("list", "--json", "--all").stdout)
    assert {v["version"]: v["created_by"] for v in listed} == {1: "alice", 2: "bob"}
    assert json.loads(run_cli("history", "nobody-had-it", "--json").stdout) == []
    from core.modelcard import model_card, model_card_markdown

    card = model_card(registry.get_by_id(first.id), registry)
    assert card["created_by"] == "alice"
    assert "queued by alice" in model_card_markdown({**card, "metrics": None})


def test_history_records_who_cancelled_a_build(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core import builds

    monkeypatch.setenv("ALTRUISM_ACTOR", "frank")
    row = builds.submit(builds.TrainRequest(recipe="nb-bow", backend="local"), registry).version
    done = run_cli("cancel", str(row.version), "--json", env={"ALTRUISM_ACTOR": "grace"})
    assert done.returncode == 0, done.stderr
    ended = registry.get_by_id(row.id)
    assert ended.status == "cancelled" and ended.error == "cancelled by grace before it started"
    assert [(c["action"], c["actor"]) for c in registry.changes(row.id)] == [
        ("queued", "frank"),
        ("cancel", "grace"),
    ]


def test_history_actor_defaults_to_the_os_user(monkeypatch: pytest.MonkeyPatch) -> None:
    import getpass

    monkeypatch.delenv("ALTRUISM_ACTOR", raising=False)
    assert current_actor() == getpass.getuser()
    assert current_actor("  ann   lee ") == "ann lee"
    monkeypatch.setenv("ALTRUISM_ACTOR", "ci-bot")
    assert current_actor() == "ci-bot" and current_actor("ann") == "ann"


def test_concurrent_promotes_all_appear_in_history(registry: Registry) -> None:
    """Several processes promote at once: every move is recorded once, in commit order, and
    the alias ends at the version of the last recorded move."""
    versions = [add_version(registry).version for _ in range(3)]
    started = time.monotonic()
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "core", "promote", str(versions[i % 3]), "--json"],
            cwd=ROOT,
            env={**os.environ, "ALTRUISM_ACTOR": f"promoter-{i}"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(PROMOTERS)
    ]
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    print(f"{PROMOTERS} concurrent promotes in {time.monotonic() - started:.1f} s")

    spans = registry.alias_history("champion")
    assert sorted(s["set_by"] for s in spans) == sorted(f"promoter-{i}" for i in range(PROMOTERS))
    for i, span in enumerate(spans):
        assert span["version"] == versions[int(span["set_by"].split("-")[1]) % 3]
        if i + 1 < len(spans):
            after = spans[i + 1]
            assert span["until"] == after["from"] and span["from"] <= after["from"]
            assert span["ended_by"] == after["set_by"]
    assert spans[-1]["until"] is None
    assert registry.resolve("champion").version == spans[-1]["version"]
