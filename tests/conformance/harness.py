"""The interface a driver implements to run the conformance suite (tests/conformance/test_lifecycle_contract.py).

Every driver must pass the same lifecycle cases, run for real against its hypervisor (or a stand-in executable
for hypervisors this machine cannot run). The cases only talk to the Engine (and its driver through the
engine), never to a driver directly; what differs between drivers is in a Harness:

- how to build the Engine for a data directory (the HostConfig, so that build_drivers picks the driver);
- what workload to run: a spec for a workload that stops when asked, one that ignores a graceful stop, and
  one that ends by itself cleanly (Behaviour);
- how to tell that the workload itself is up (a console or log marker, not just the hypervisor's word);
- how to make it crash from outside (SIGKILL its process);
- what would be left behind (domains, containers, processes, files).

To add a driver (e.g. "xen"):
1. write tests/conformance/<driver>_harness.py with a class implementing Harness and a pytest fixture named
   `<driver>_harness` that yields it (it may use any fixture, e.g. a stand-in executable on a tmp path);
2. add the driver to DRIVERS in tests/conformance/conftest.py and import its fixture there.
A case that cannot apply to a driver (a stand-in cannot crash, say) is left out of `supports`; the suite then
skips it with `skip_reason(case)`. CASES lists every case name.
"""

from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from vmhost.config import HostConfig
from vmhost.engine import Engine

CASES = frozenset(
    {
        "create",
        "two-phase-start",
        "get-and-list",
        "graceful-stop",
        "forced-stop-after-deadline",
        "idempotent-start-stop",
        "delete-leaves-nothing",
        "bad-spec-rejected",
        "crash-detected",
        "crash-restarts",
        "clean-exit-is-stopped",
        "agent-restart-adopts",
    }
)


class Behaviour(StrEnum):
    NORMAL = "normal"
    """Runs until asked to stop, then stops at once."""
    IGNORES_STOP = "ignores-stop"
    """Ignores the graceful stop request (ACPI power button, SIGTERM): only a forced stop ends it."""
    EXITS_CLEANLY = "exits-cleanly"
    """Ends by itself, cleanly (guest poweroff, exit 0), a second or two after it is up."""


class Harness(Protocol):
    driver: str
    """The driver kind the engine records for the workload ("libvirt", "runc", ...)."""
    supports: frozenset[str]
    """The cases (from CASES) that apply to this driver."""
    named: list[str]
    """Every name `name()` handed out; the suite checks that none is left behind after each test."""

    def config(self, data_dir: Path) -> HostConfig:
        """A host config on `data_dir` whose build_drivers includes this driver."""
        ...

    def name(self, suffix: str) -> str:
        """A workload name unique to this test session (the leftover checks look for it)."""
        ...

    def spec(self, name: str, behaviour: Behaviour = Behaviour.NORMAL, **fields: Any) -> dict[str, Any]:
        """A spec document for the workload; `fields` override top-level keys (restart_policy, ...)."""
        ...

    def bad_spec(self, name: str) -> tuple[dict[str, Any], str]:
        """A spec that parses but this host cannot run, and the field path the refusal must name."""
        ...

    def wait_running(self, engine: Engine, name: str, times: int = 1, timeout: float = 90.0) -> None:
        """Return once the workload itself has said it is up `times` times (its console/log keeps every run)."""
        ...

    def crash(self, engine: Engine, name: str) -> None:
        """Make the running workload die abnormally, from outside vmhost (e.g. SIGKILL its process)."""
        ...

    def leftovers(self, engine: Engine, name: str) -> list[str]:
        """What the hypervisor or the host still holds of `name` (domains, containers, processes, files)."""
        ...

    def skip_reason(self, case: str) -> str:
        """Why `case` does not apply (asked only for cases outside `supports`)."""
        ...
