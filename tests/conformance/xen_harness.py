"""The xen harness: the real XlDriver (through build_drivers with vm_driver = "xen") running the stand-in `xl`
(tests/xen_standin/xl), whose "guest" takes its behaviour from the kernel command line. No Xen host is used.

Crashes: xl's monitor destroys a crashed domain at once under on_crash=destroy and leaves nothing saying why,
so vmhost could only read it as a stop. The spec here keeps crashed domains (on_crash: preserve); the driver then
reports CRASHED_PRESERVED, which the engine treats as crashed, and a restart clears the shell first.
"""

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.harness import CASES, Behaviour
from tests.eventually import eventually
from tests.integration.conftest import allowed_test_roots
from tests.unit.xen_standin import StandIn
from vmhost.config import HostConfig
from vmhost.engine import Engine

PREFIX = f"vmhost-xen-{secrets.token_hex(3)}-"
SKIPPED = {
    "crash-detected": "xl destroys a crashed domain (on_crash destroy) without a trace of why, so a crash reads "
    "as a stop; with on_crash preserve the state is CRASHED_PRESERVED, not CRASHED (crash-restarts covers it)",
    "get-and-list": "a PVH domain has no process of its own (no QEMU), so its runtime pid is None, not > 0",
}


class XenHarness:
    driver = "xen"
    supports = CASES - {"crash-detected", "get-and-list"}

    def __init__(self, standin: StandIn, kernel: Path):
        self.standin = standin
        self.kernel = kernel
        self.named: list[str] = []

    def config(self, data_dir: Path) -> HostConfig:
        return HostConfig(
            data_dir=data_dir,
            vm_driver="xen",
            xl_command=self.standin.command,
            stop_timeout=5,
            allowed_paths=allowed_test_roots(data_dir),
        )

    def name(self, suffix: str) -> str:
        self.named.append(PREFIX + suffix)
        return self.named[-1]

    def spec(self, name: str, behaviour: Behaviour = Behaviour.NORMAL, **fields: Any) -> dict[str, Any]:
        return {
            "name": name,
            "memory": "64MiB",
            "boot": {"kernel": {"kernel": str(self.kernel), "cmdline": f"vmhost.behaviour={behaviour.value}"}},
            "lifecycle": {"on_crash": "preserve"},
            **fields,
        }

    def bad_spec(self, name: str) -> tuple[dict[str, Any], str]:
        spec = self.spec(name, nics=[{"type": "bridge", "source": "vmhost-nobr0"}])
        return spec, "nics.0.source"

    def wait_running(self, engine: Engine, name: str, times: int = 1, timeout: float = 30.0) -> None:
        eventually(lambda: self.standin.boots(name) >= times, timeout, 0.05, f"{name} booted {times} times")

    def crash(self, engine: Engine, name: str) -> None:
        self.standin.crash(name)

    def leftovers(self, engine: Engine, name: str) -> list[str]:
        found = [f"domain {name}"] if name in self.standin.domains() else []
        record = engine.config.data_dir / "xen" / f"{name}.json"
        return found + ([str(record)] if record.exists() else [])

    def skip_reason(self, case: str) -> str:
        return SKIPPED[case]


@pytest.fixture
def xen_harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[XenHarness]:
    """The stand-in's per-domain monitors (xl's daemonized `xl create`) are stopped when the test ends."""
    standin = StandIn(tmp_path / "xl-state")
    monkeypatch.setenv("XL_STANDIN_STATE", str(standin.state))
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"stand-in kernel")
    yield XenHarness(standin, kernel)
    standin.stop_monitors()
