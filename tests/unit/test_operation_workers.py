"""How many agent operations run at once: `operation_workers`, by default derived from the host's CPUs, is what the
agent `vmhost serve` builds uses; beyond it operations wait in order, and one VM still has one operation at a
time."""

import threading
from pathlib import Path

import pytest

from tests.eventually import eventually
from vmhost.api.operations import Operations, OpState
from vmhost.api.server import build_agent
from vmhost.config import HostConfig, load_config
from vmhost.errors import Conflict, VmhostError
from vmhost.plugins import Plugins


@pytest.mark.parametrize(("cpus", "workers"), [(None, 16), (1, 16), (2, 32), (3, 48), (4, 64), (64, 64)])
def test_the_default_is_16_workers_per_cpu_from_16_to_64(monkeypatch, cpus, workers):
    monkeypatch.setattr("os.cpu_count", lambda: cpus)
    assert HostConfig().operation_workers == workers


def test_the_config_file_sets_it(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("operation_workers = 5\n")
    assert load_config(path).operation_workers == 5


@pytest.mark.parametrize("value", ["0", "-2", "2.5", '"8"', "true"])
def test_a_count_that_is_not_a_positive_integer_is_refused_naming_the_key(tmp_path, value):
    path = tmp_path / "config.toml"
    path.write_text(f"operation_workers = {value}\n")
    with pytest.raises(VmhostError, match="operation_workers must be"):
        load_config(path)


def test_the_agent_runs_as_many_operations_at_once_as_configured(tmp_path: Path):
    config = HostConfig(data_dir=tmp_path / "data", libvirt_uri="test:///default", operation_workers=7)
    agent = build_agent(config, Plugins.discover(config))
    try:
        assert agent.operations.workers == 7
    finally:
        agent.operations.shutdown()
        agent.engine.store.close()


def test_operations_beyond_the_workers_wait_for_a_free_one():
    operations = Operations(workers=3)
    release, order = threading.Event(), []

    def work(name: str) -> str:
        order.append(name)
        assert release.wait(10)
        return name

    try:
        submitted = [operations.submit("start", f"vm{i}", lambda i=i: work(f"vm{i}")) for i in range(5)]
        eventually(lambda: len(order) == 3, 5, 0.01, "three operations running")
        assert [op.state for op in submitted] == [OpState.RUNNING] * 3 + [OpState.PENDING] * 2
        with pytest.raises(Conflict, match="still running on vm0"):
            operations.submit("stop", "vm0", lambda: None)
        release.set()
        for operation in submitted:
            assert operation.done.wait(10)
        assert set(order[3:]) == {"vm3", "vm4"}, "the waiting ones ran once workers were free"
        assert [op.result for op in submitted] == [f"vm{i}" for i in range(5)]
    finally:
        release.set()
        operations.shutdown()
