"""The libvirt/QEMU harness: the tiny guest (guest/), booted by a real libvirtd under TCG."""

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.conformance.harness import CASES, Behaviour
from tests.integration.conftest import URI, allowed_test_roots, wait_for_count
from vmhost.config import HostConfig
from vmhost.engine import Engine

CMDLINES = {
    Behaviour.NORMAL: "",
    Behaviour.IGNORES_STOP: "vmhost.ignore_acpi=1",
    Behaviour.EXITS_CLEANLY: "vmhost.poweroff_after=1",
}


class LibvirtHarness:
    driver = "libvirt"
    supports = CASES

    def __init__(self, guest_spec: Callable[..., dict[str, Any]], vm_name: Callable[[str], str], conn: Any):
        self._guest_spec = guest_spec
        self._vm_name = vm_name
        self._conn = conn
        self.named: list[str] = []

    def config(self, data_dir: Path) -> HostConfig:
        return HostConfig(
            libvirt_uri=URI, data_dir=data_dir, accel="tcg", stop_timeout=30, allowed_paths=allowed_test_roots(data_dir)
        )

    def name(self, suffix: str) -> str:
        self.named.append(self._vm_name(suffix))
        return self.named[-1]

    def spec(self, name: str, behaviour: Behaviour = Behaviour.NORMAL, **fields: Any) -> dict[str, Any]:
        return self._guest_spec(name, cmdline=CMDLINES[behaviour], **fields)

    def bad_spec(self, name: str) -> tuple[dict[str, Any], str]:
        return self.spec(name, nics=[{"type": "bridge", "source": "vmhost-nobr0"}]), "nics.0.source"

    def wait_running(self, engine: Engine, name: str, times: int = 1, timeout: float = 90.0) -> None:
        wait_for_count(engine, name, "VMHOST-GUEST-READY", times, timeout)

    def crash(self, engine: Engine, name: str) -> None:
        pid = engine.driver.info(name).pid
        assert pid, f"{name} has no QEMU process"
        os.kill(pid, signal.SIGKILL)

    def leftovers(self, engine: Engine, name: str) -> list[str]:
        found = []
        if name in [dom.name() for dom in self._conn.listAllDomains()]:
            found.append(f"libvirt domain {name}")
        processes = subprocess.run(["pgrep", "-f", f"guest={name},"], capture_output=True, text=True, check=False)
        found += [f"QEMU process {pid}" for pid in processes.stdout.split()]
        return found

    def skip_reason(self, case: str) -> str:
        return f"{case} does not apply"


@pytest.fixture
def libvirt_harness(
    guest_spec: Callable[..., dict[str, Any]], vm_name: Callable[[str], str], libvirt_conn: libvirt.virConnect
) -> LibvirtHarness:
    return LibvirtHarness(guest_spec, vm_name, libvirt_conn)
