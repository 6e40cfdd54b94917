"""Fast checks of the swarm builder's parts that need no engine: settings, the per-build
image's context, the sweep's concurrency. The builder itself runs on a real swarm in
tests/test_swarm_builder.py."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from bench import sweep as sweep_bench
from core import sweeps
from core.builders.base import BuildJob, BuildLog
from core.builders.select import resolve_backend
from core.builders.swarm import (
    SwarmBuilder,
    _job_context,
    image_registry,
    node_down,
    parse_bytes,
    registry_scheme,
    service_name,
    unique_tag,
)
from core.config import settings
from core.errors import BadInput, BuildFailed


@pytest.mark.parametrize("value", ["", "   "])
def test_swarm_needs_an_image_registry(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SWARM_IMAGE_REGISTRY", value)
    with pytest.raises(BadInput, match="SWARM_IMAGE_REGISTRY"):
        image_registry()
    with pytest.raises(BadInput, match="SWARM_IMAGE_REGISTRY"):
        resolve_backend("swarm")  # refused before any engine is asked


@pytest.mark.parametrize(
    "value", ["http://127.0.0.1:5000", "reg/path", "a b", "host:port", "x:123456", "reg;rm"]
)
def test_a_malformed_image_registry_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SWARM_IMAGE_REGISTRY", value)
    with pytest.raises(BadInput, match=r"host\[:port\]"):
        image_registry()


def test_swarm_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARM_IMAGE_REGISTRY", " registry.internal:5000 ")
    monkeypatch.setenv("SWARM_NODE_HOSTS", "node-a=tcp://a:2376, node-b = ssh://ops@b,junk")
    conf = settings()
    assert image_registry() == "registry.internal:5000"
    assert conf.swarm_node_hosts == {"node-a": "tcp://a:2376", "node-b": "ssh://ops@b"}
    assert conf.swarm_network == "altruism-lab-jobs"
    assert parse_bytes("1g") == 1 << 30 and parse_bytes("512m") == 512 << 20
    assert parse_bytes(None) is None


@pytest.mark.parametrize(
    ("value", "retries"), [(None, 1), ("0", 0), ("2", 2), ("junk", 1), ("-3", 0), ("99", 5)]
)
def test_swarm_retries_default_to_one_and_stay_in_range(
    monkeypatch: pytest.MonkeyPatch, value: str | None, retries: int
) -> None:
    if value is None:
        monkeypatch.delenv("SWARM_RETRIES", raising=False)
    else:
        monkeypatch.setenv("SWARM_RETRIES", value)
    assert settings().swarm_retries == retries


INSECURE = {
    "InsecureRegistryCIDRs": ["127.0.0.0/8", "10.213.0.0/16"],
    "IndexConfigs": {"reg.lan:5000": {"Name": "reg.lan:5000", "Secure": False}},
}


@pytest.mark.parametrize(
    ("address", "config", "scheme"),
    [
        ("127.0.0.1:5000", {}, "http"),
        ("localhost:5000", {}, "http"),
        ("10.213.4.1:5000", INSECURE, "http"),  # in an --insecure-registry CIDR
        ("reg.lan:5000", INSECURE, "http"),  # named by --insecure-registry
        ("10.214.0.1:5000", INSECURE, "https"),
        ("registry.example.com", INSECURE, "https"),
        ("10.213.4.1:5000", {}, "https"),
    ],
)
def test_the_job_manifest_is_deleted_as_the_engine_reaches_the_registry(
    address: str, config: dict, scheme: str
) -> None:
    assert registry_scheme(address, config) == scheme


def test_the_job_image_context_holds_the_job_and_the_dataset(tmp_path: Path) -> None:
    data = tmp_path / "canonical.jsonl"
    data.write_bytes(b'{"request_id": "t3_1"}\n')
    job = BuildJob(
        version_id=7, recipe="nb-bow", params={"alpha": 1.0}, data_file=data,
        data_sha256="ab" * 32, seed=1, test_size=0.2, threshold_policy="f1",
    )  # fmt: skip
    trainer = "127.0.0.1:5000/altruism-lab/trainer@sha256:" + "0" * 64
    context = _job_context(job, trainer, io.BytesIO())
    with tarfile.open(fileobj=context) as tar:
        names = {m.name: m for m in tar.getmembers()}
        dockerfile = tar.extractfile("Dockerfile").read().decode()
        spec = json.loads(tar.extractfile("work/job.json").read())
        copied = tar.extractfile("work/data.jsonl").read()
    assert dockerfile.splitlines() == [f"FROM {trainer}", "COPY --chown=10001:10001 work /work"]
    assert set(names) == {"Dockerfile", "work", "work/out", "work/job.json", "work/data.jsonl"}
    assert names["work/out"].isdir() and names["work/data.jsonl"].mode == 0o400
    assert spec["data_file"] == "/work/data.jsonl" and spec["recipe"] == "nb-bow"
    assert copied == data.read_bytes()
    assert str(tmp_path) not in json.dumps(spec)  # no host path reaches the task


def test_a_sweep_on_a_swarm_keeps_as_many_in_flight_as_the_cluster_has_cpus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from core.builders import swarm

    monkeypatch.setenv("MAX_PARALLEL_BUILDS", "2")
    monkeypatch.setattr(swarm, "cluster_cpus", lambda: 8)
    assert sweeps.parallel_for("swarm", 12) == 8
    assert sweeps.parallel_for("swarm", 3) == 3
    assert sweeps.parallel_for("docker", 12) == 2
    assert sweeps.parallel_for("local", 12) == 2
    monkeypatch.setattr(swarm, "cluster_cpus", lambda: None)  # no manager answers
    assert sweeps.parallel_for("swarm", 12) == 2


def test_sweep_bench_report() -> None:
    result = {
        "backend": "swarm", "builds": 12, "parallel": 12, "wall": 60.0, "fit_total": 30.0,
        "span_median": 40.0, "overhead_median": 37.5, "fit_median": 2.5,
    }  # fmt: skip
    info = {"date": "today", "nproc": 2, "cpu": "cpu", "memory_gib": 1.0, "python": "3.11",
            "load": "0.10"}  # fmt: skip
    text = sweep_bench.report([result], info, "`data`")
    assert text.startswith(sweep_bench.SECTION + "\n")
    assert "| `swarm` | 12 | 12 | 60.0 s | 5.00 s | 30.0 s | 40.00 s | 37.50 s |" in text


def test_services_are_named_by_the_version_number_people_see(tmp_path: Path) -> None:
    """The registry's internal row id (84) is not the number the CLI shows (52)."""
    job = BuildJob(
        version_id=84, version_number=52, recipe="nb-bow", params={}, data_file=tmp_path,
        data_sha256="ab" * 32, seed=1, test_size=0.2, threshold_policy="f1",
        registry_id="0123456789abcdef",
    )  # fmt: skip
    names = {service_name(job, unique_tag(job)) for _ in range(20)}
    assert len(names) == 20  # unique per build
    assert all(n.startswith("altruism-01234567-v52-") for n in names), names


class _Node:
    def __init__(self, node_id: str, state: str, availability: str = "active") -> None:
        self.id = node_id
        self.attrs = {
            "Status": {"State": state},
            "Spec": {"Availability": availability},
            "Description": {"Hostname": f"host-{node_id}"},
        }


class _Nodes:
    def __init__(self, *nodes: _Node) -> None:
        self.nodes = {node.id: node for node in nodes}

    def get(self, node_id: str) -> _Node:
        import docker.errors

        if node_id not in self.nodes:
            raise docker.errors.NotFound("no such node")
        return self.nodes[node_id]

    def list(self) -> list[_Node]:
        return list(self.nodes.values())


class _Client:
    def __init__(self, *nodes: _Node) -> None:
        self.nodes = _Nodes(*nodes)


class _Service:
    removed = 0

    def remove(self) -> None:
        self.removed += 1


def test_a_down_or_removed_node_is_seen_as_lost() -> None:
    client = _Client(_Node("a", "ready"), _Node("b", "down"))
    assert node_down(client, "a") is None
    assert node_down(client, "b") == ("b", "host-b")
    assert node_down(client, "gone") == ("gone", "gone")  # `docker node rm`


@pytest.mark.parametrize(
    ("retries", "nodes", "error"),
    [
        (1, [_Node("b", "ready")], None),  # retried on b
        (0, [_Node("b", "ready")], "node host-a went down"),
        (1, [_Node("b", "ready", "drain")], "no other node is ready to retry on"),
        (1, [_Node("b", "down")], "no other node is ready to retry on"),
    ],
)
def test_a_lost_build_is_retried_while_retries_and_ready_nodes_last(
    monkeypatch: pytest.MonkeyPatch, retries: int, nodes: list, error: str | None
) -> None:
    monkeypatch.setenv("SWARM_RETRIES", str(retries))
    client, service, down = _Client(_Node("a", "down"), *nodes), _Service(), {}
    lines: list[str] = []
    lost = ("a", "host-a")
    if error is None:
        SwarmBuilder()._lost(client, service, lost, down, BuildLog(echo=lines.append))
        assert any("node host-a went down; retrying" in line for line in lines), lines
    else:
        with pytest.raises(BuildFailed, match=error):
            SwarmBuilder()._lost(client, service, lost, down, BuildLog(echo=lines.append))
    assert service.removed == 1 and down == {"a": "host-a"}


def test_an_adopted_build_whose_node_goes_down_fails_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`reconcile` has no job to resubmit: even with retries left, it fails naming the node."""
    monkeypatch.setenv("SWARM_RETRIES", "1")
    client, service, down = _Client(_Node("a", "down"), _Node("b", "ready")), _Service(), {}
    with pytest.raises(BuildFailed, match=r"^node host-a went down$"):
        SwarmBuilder()._lost(client, service, ("a", "host-a"), down, BuildLog(), can_retry=False)
    assert service.removed == 1
