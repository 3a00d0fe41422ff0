"""The smartos harness: the real VmadmDriver (through build_drivers with vm_driver = "smartos") running the
stand-in `vmadm` (tests/smartos_standin/vmadm). No SmartOS host is used.

The stand-in's VMs have no guest of their own: "up" is vmadm's boot count, a guest that ignores the power button
is the stand-in's ignore_stop control (set when the spec is made), and a crash is vmadm's `failed` state, the
one abnormal end vmadm reports (a bhyve process dying shows as `stopped`, like a poweroff).
"""

import secrets
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.harness import CASES, Behaviour
from tests.eventually import eventually
from tests.integration.conftest import allowed_test_roots
from tests.smartos_standin import EXECUTABLE, Standin
from vmhost.config import HostConfig
from vmhost.engine import Engine

PREFIX = f"vmhost-smartos-{secrets.token_hex(3)}-"
SKIPPED = {
    "two-phase-start": "vmadm has no paused state: the start-paused hooks see the created, not yet booted VM "
    "as SHUTOFF, not PAUSED",
    "crash-restarts": "a crashed vmadm VM is `failed`, which vmadm cannot start again, and a bhyve process that "
    "dies leaves `stopped`, like a poweroff: no crash vmadm reports can be restarted",
    "clean-exit-is-stopped": "the stand-in's VMs have no guest that could power off by itself",
}


class SmartosHarness:
    driver = "smartos"
    supports = CASES - SKIPPED.keys()

    def __init__(self, standin: Standin):
        self.standin = standin
        self.named: list[str] = []

    def config(self, data_dir: Path) -> HostConfig:
        return HostConfig(
            data_dir=data_dir,
            vm_driver="smartos",
            vmadm_command=str(EXECUTABLE),
            stop_timeout=5,
            allowed_paths=allowed_test_roots(data_dir),
        )

    def name(self, suffix: str) -> str:
        self.named.append(PREFIX + suffix)
        return self.named[-1]

    def spec(self, name: str, behaviour: Behaviour = Behaviour.NORMAL, **fields: Any) -> dict[str, Any]:
        if behaviour == Behaviour.IGNORES_STOP:
            self.standin.ignore_stop(name)
        return {"name": name, "memory": "512MiB", **fields}

    def bad_spec(self, name: str) -> tuple[dict[str, Any], str]:
        return self.spec(name, cpu={"vcpus": 2, "pinning": {"0": "0"}}), "cpu.pinning"

    def wait_running(self, engine: Engine, name: str, times: int = 1, timeout: float = 30.0) -> None:
        eventually(lambda: self._boots(name) >= times, timeout, 0.05, f"{name} booted {times} times")

    def _boots(self, name: str) -> int:
        vm = next((vm for vm in self.standin.vms().values() if vm.get("alias") == name), {})
        return int(vm.get("boot_count", 0)) if vm.get("state") == "running" else 0

    def crash(self, engine: Engine, name: str) -> None:
        self.standin.set_state(name, "failed")

    def leftovers(self, engine: Engine, name: str) -> list[str]:
        return [f"vmadm VM {uuid}" for uuid, vm in self.standin.vms().items() if vm.get("alias") == name]

    def skip_reason(self, case: str) -> str:
        return SKIPPED[case]


@pytest.fixture
def smartos_harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SmartosHarness:
    standin = Standin(tmp_path / "vmadm-state")
    monkeypatch.setenv("VMADM_STANDIN_STATE", str(standin.root))
    return SmartosHarness(standin)
