"""Admission control on the fake hypervisor: a start the host's free memory (less memory_reserve and the starts in
flight) cannot hold is refused before the hypervisor is asked to run anything, on every path that starts a VM,
with the numbers in the error; the config keys that set it."""

import threading
from dataclasses import replace
from pathlib import Path

import pytest

from tests.eventually import eventually
from tests.fakes.driver import FakeDriver, FakeHypervisor
from tests.fakes.engines import spec
from vmhost.config import HostConfig, load_config
from vmhost.drivers.base import HostInfo
from vmhost.engine import Engine
from vmhost.engine.admission import demand
from vmhost.engine.hooks import Hook, HookContext, Phase
from vmhost.errors import HostResourceError, VmhostError
from vmhost.spec import parse_spec
from vmhost.store.sqlite import Store

MiB = 2**20


class SizedDriver(FakeDriver):
    """A fake host whose free memory the test sets."""

    free = 1024 * MiB

    def host_info(self) -> HostInfo:
        return HostInfo(hypervisor="fake", cpus=2, memory_total=2048 * MiB, memory_available=self.free, accel="tcg")


@pytest.fixture
def driver() -> SizedDriver:
    return SizedDriver(FakeHypervisor())


def engine_with(driver: SizedDriver, data_dir: Path, reserve: int, overhead: int, hooks: tuple[Hook, ...] = ()):
    config = HostConfig(
        data_dir=data_dir,
        stop_timeout=0.5,
        allowed_paths=(data_dir,),
        memory_reserve=reserve * MiB,
        vm_memory_overhead=overhead * MiB,
    )
    engine = Engine(config, driver, store=Store(config.db_path, synchronous="NORMAL"), hooks=hooks)
    driver.hypervisor.sink = engine.on_domain_event
    return engine


@pytest.fixture
def engine(driver: SizedDriver, tmp_path: Path) -> Engine:
    """1024 MiB free, 256 MiB reserved, 64 MiB overhead: a guest of up to 704 MiB fits."""
    return engine_with(driver, tmp_path / "data", reserve=256, overhead=64)


def test_a_start_the_free_memory_cannot_hold_is_refused_with_the_numbers(engine, driver):
    engine.create(spec("big", memory="768MiB"))
    with pytest.raises(HostResourceError) as refused:
        engine.start("big")
    assert refused.value.message == (
        "not enough host memory to start big: it needs 768MiB of guest memory + 64MiB vm_memory_overhead = 832MiB; "
        "the host has 1024MiB free, less 256MiB memory_reserve, which leaves 768MiB"
    )
    assert "create_paused" not in driver.calls, "refused before the hypervisor was asked to run anything"
    assert engine.record("big").state == "stopped"
    assert [op.kind for op in engine.store.operations("big")] == ["create"], "no start was journaled"


def test_a_guest_that_fills_what_is_left_exactly_starts(engine, driver):
    engine.create(spec("snug", memory="704MiB"))
    assert engine.start("snug").state == "running"


def test_create_with_start_refused_leaves_nothing_behind(engine, driver):
    with pytest.raises(HostResourceError, match="not enough host memory to start big"):
        engine.create(spec("big", memory="1GiB", disks=[{"source": {"type": "new", "size": "1MiB"}}]), start=True)
    assert engine.store.get_vm("big") is None
    assert "big" not in driver.hypervisor.domains
    assert list((engine.config.data_dir / "vms").iterdir()) == []


def test_parallel_starts_cannot_be_promised_the_same_memory(driver, tmp_path):
    """A start in flight holds its memory until it has finished: a second start reading the same free figure is
    refused, naming the promise; once the first has finished (or failed), its promise is gone."""
    inside, release = threading.Event(), threading.Event()

    def hold(context: HookContext) -> None:
        if context.spec.name == "first":
            inside.set()
            assert release.wait(10)

    engine = engine_with(driver, tmp_path / "data", reserve=0, overhead=0, hooks=(Hook("t", Phase.START_PAUSED, hold),))
    for name in ("first", "second"):
        engine.create(spec(name, memory="600MiB"))
    first = threading.Thread(target=engine.start, args=("first",))
    first.start()
    try:
        assert inside.wait(10)
        with pytest.raises(HostResourceError) as refused:
            engine.start("second")
        assert "less 0MiB memory_reserve and 600MiB promised to starts in flight, which leaves 424MiB" in str(
            refused.value.message
        )
    finally:
        release.set()
        first.join(10)
    assert engine.record("first").state == "running"
    engine.stop("first", force=True)
    assert engine.start("second").state == "running", "the finished start no longer holds its promise"


def test_a_failed_start_gives_its_promise_back(engine, driver):
    engine.create(spec("a", memory="600MiB"))
    engine.create(spec("b", memory="600MiB"))
    engine.core.driver.for_name("a").fail_next("resume", VmhostError("resume failed"))
    with pytest.raises(VmhostError, match="resume failed"):
        engine.start("a")
    assert engine.start("b").state == "running"


def test_a_restart_policy_restart_is_refused_too_and_the_policy_gives_up(engine, driver):
    backoff = {"initial_seconds": 0.1, "max_seconds": 0.1, "max_retries": 1}
    engine.create(spec("web", memory="512MiB", restart_policy="always", restart_backoff=backoff), start=True)
    driver.free = 512 * MiB  # the host filled up meanwhile
    started = driver.calls.count("create_paused")
    driver.hypervisor.crash("web")
    eventually(lambda: engine.record("web").desired_state == "stopped", 5, 0.05, "the policy gave up")
    assert driver.calls.count("create_paused") == started, "the refused restart never reached the hypervisor"
    assert engine.record("web").state == "crashed"


def test_demand_is_guest_memory_plus_the_overhead_and_hugepages_come_from_their_pool():
    config = HostConfig(vm_memory_overhead=100 * MiB)
    plain = demand(parse_spec(spec("a", memory="256MiB")), config)
    assert (plain.guest, plain.overhead, plain.total) == (256 * MiB, 100 * MiB, 356 * MiB)
    huge = demand(parse_spec(spec("b", memory={"size": "1GiB", "hugepages": True})), config)
    assert (huge.guest, huge.total) == (0, 100 * MiB), "only QEMU's own memory comes from the free memory"


@pytest.mark.parametrize(("host", "guest", "overhead"), [("kvm", None, 64), ("tcg", None, 192), ("kvm", "tcg", 192)])
def test_unset_the_overhead_follows_the_accelerator_the_guest_runs_on(host, guest, overhead):
    """TCG's translated-code cache makes QEMU's own share about three times KVM's."""
    document = spec("a", memory="256MiB", **({"accel": guest} if guest else {}))
    assert demand(parse_spec(document), HostConfig(accel=host)).overhead == overhead * MiB


def test_by_default_512MiB_stay_with_the_host():
    assert HostConfig().memory_reserve == 512 * MiB


def test_memory_keys_are_read_from_the_config_file(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(f"memory_reserve = {2 << 30}\nvm_memory_overhead = 0\n")
    assert load_config(path) == replace(HostConfig(), memory_reserve=2 << 30, vm_memory_overhead=0)


@pytest.mark.parametrize("value", ["-1", '"512MiB"', "1.5", "true"])
@pytest.mark.parametrize("key", ["memory_reserve", "vm_memory_overhead"])
def test_a_memory_key_that_is_not_whole_bytes_is_refused_naming_it(tmp_path, key, value):
    path = tmp_path / "config.toml"
    path.write_text(f"{key} = {value}\n")
    with pytest.raises(VmhostError, match=f"{key} must be a whole number of bytes"):
        load_config(path)
