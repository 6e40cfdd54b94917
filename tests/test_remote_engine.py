"""The Docker builder on an engine that cannot see this machine's files (issue 13, part 1).

The job and the dataset go into the container through the engine's archive API and the
results come back the same way, so a build works on any engine DOCKER_HOST names. The engine
here is a private second dockerd in its own mount namespace, with the checkout and the temp
folder hidden under empty tmpfs mounts (`tests.servers.start_private_dockerd`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.config import settings
from tests.helpers import ROOT, run_cli

pytestmark = pytest.mark.docker


def _train(*args: str, env: dict[str, str] | None = None) -> dict:
    done = run_cli("train", "--recipe", "tfidf-logreg", "--backend", "docker", "--json",
                   "--quiet", *args, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_remote_engine_builds_what_the_local_engine_builds_without_seeing_our_files(
    remote_engine, lab: Path
) -> None:
    # the engine really cannot see the checkout or the lab: their paths are empty there
    base = settings().docker_base_image
    for folder in (ROOT, lab):
        seen = remote_engine.docker(
            "run", "--rm", "--network", "none", "-v", f"{folder}:/seen:ro", base, "ls", "-A",
            "/seen",
        )  # fmt: skip
        assert seen.returncode == 0 and seen.stdout.strip() == "", (folder, seen.stdout)

    remote = {"DOCKER_HOST": remote_engine.host}
    built = _train(env=remote)
    assert built["status"] == "ready", built["error"]
    docker = built["provenance"]["docker"]
    trainer = remote_engine.docker("image", "inspect", "--format", "{{.Id}}", docker["image_id"])
    assert trainer.returncode == 0 and trainer.stdout.strip() == docker["image_id"]
    assert docker["image_reused"] is True  # the copied image, found by its tag
    left = remote_engine.docker("ps", "-aq", "--filter", "label=altruism-lab.version-id")
    assert left.stdout.strip() == ""  # the container is gone

    again = run_cli("reproduce", str(built["version"]), "--json", "--quiet", env=remote)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["identical"] is True

    # the same request on this machine's engine gives a byte-identical artifact
    local = _train("--force")
    assert local["artifact_sha256"] == built["artifact_sha256"]
    assert local["provenance"]["docker"]["image_id"] == docker["image_id"]
