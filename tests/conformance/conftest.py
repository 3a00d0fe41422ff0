"""The conformance suite's fixtures: `harness` runs every case once per driver in DRIVERS.

A driver joins by adding its name here and importing its `<driver>_harness` fixture (see harness.py).
"""

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conformance.harness import Harness
from tests.conformance.libvirt_harness import libvirt_harness
from tests.conformance.runc_harness import busybox_image, runc_harness
from tests.conformance.smartos_harness import smartos_harness
from tests.conformance.xen_harness import xen_harness
from tests.integration.conftest import _no_leftovers, data_dir, guest, guest_spec, libvirt_conn, vm_name
from vmhost.drivers.select import build_drivers, build_event_source
from vmhost.engine import Engine
from vmhost.errors import VmhostError

DRIVERS = ["libvirt", "runc", "xen", "smartos"]

__all__ = [
    "_no_leftovers",
    "busybox_image",
    "data_dir",
    "guest",
    "guest_spec",
    "libvirt_conn",
    "libvirt_harness",
    "runc_harness",
    "smartos_harness",
    "vm_name",
    "xen_harness",
]


@pytest.fixture(params=DRIVERS)
def harness(request: pytest.FixtureRequest) -> Harness:
    found: Harness = request.getfixturevalue(f"{request.param}_harness")
    return found


@pytest.fixture
def new_engine(harness: Harness, data_dir: Path) -> Iterator[Callable[[], Engine]]:
    """Each call is a new "agent" on the same data directory. Teardown deletes every VM the store knows and
    checks that nothing of any workload the test named is left."""
    config = harness.config(data_dir)
    made: list[Engine] = []

    def make() -> Engine:
        made.append(Engine(config, build_drivers(config)))
        return made[-1]

    yield make
    final = Engine(config, build_drivers(config))
    for record in final.store.list_vms():
        with contextlib.suppress(VmhostError):
            final.delete(record.name)
    left = {name: harness.leftovers(final, name) for name in getattr(harness, "named", [])}
    assert not {name: what for name, what in left.items() if what}, f"left behind: {left}"


@pytest.fixture
def engine(new_engine: Callable[[], Engine]) -> Engine:
    return new_engine()


@pytest.fixture
def follow_events(engine: Engine) -> Iterator[Callable[[], None]]:
    """Feed the driver's events (native or polled) to the engine, as the agent does."""
    sources = []

    def start() -> None:
        sources.append(build_event_source(engine.config, engine.driver.drivers))
        sources[-1].start(engine.on_domain_event, lambda: None, lambda _reason: None)

    yield start
    for source in sources:
        source.stop()


@pytest.fixture(autouse=True)
def _applies(request: pytest.FixtureRequest) -> None:
    """A case marked `case("name")` is skipped for drivers that do not support it."""
    marker = request.node.get_closest_marker("case")
    if marker is None or "harness" not in request.fixturenames:
        return
    harness: Harness = request.getfixturevalue("harness")
    case = marker.args[0]
    if case not in harness.supports:
        pytest.skip(f"{harness.driver}: {harness.skip_reason(case)}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "case(name): the conformance case a test checks (see harness.CASES)")
