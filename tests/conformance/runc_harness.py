"""The runc harness: a busybox container from a local OCI image layout, run by the real runc."""

import os
import secrets
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.busybox import busybox_layout
from tests.conformance.harness import CASES, Behaviour
from tests.eventually import eventually
from tests.integration.conftest import allowed_test_roots
from vmhost.config import HostConfig
from vmhost.engine import Engine

READY = "VMHOST-CONTAINER-READY"
PREFIX = f"vmhost-ct-{secrets.token_hex(3)}-"
SCRIPTS = {
    Behaviour.NORMAL: f'echo {READY}; trap "echo VMHOST-CONTAINER-STOPPING; exit 0" TERM; '
    "while :; do sleep 1 & wait $!; done",
    Behaviour.IGNORES_STOP: f"echo {READY}; trap '' TERM; while :; do sleep 1 & wait $!; done",
    Behaviour.EXITS_CLEANLY: f"echo {READY}; sleep 1; echo VMHOST-CONTAINER-DONE; exit 0",
}


def wait_for_log(engine: Engine, name: str, marker: str, times: int = 1, timeout: float = 30.0) -> str:
    path = engine.console_log_path(name)

    def logged() -> str:
        text = path.read_text(errors="replace") if path.exists() else ""
        assert text.count(marker) >= times, text[-1500:]
        return text

    return eventually(logged, timeout, 0.05, f"{marker} {times} times in {name}'s log")


class RuncHarness:
    driver = "runc"
    supports = CASES

    def __init__(self, image: Path):
        self.image = image
        self.named: list[str] = []
        self.data_dir: Path | None = None

    def config(self, data_dir: Path) -> HostConfig:
        self.data_dir = data_dir
        return HostConfig(data_dir=data_dir, accel="tcg", stop_timeout=30, allowed_paths=allowed_test_roots(data_dir))

    def name(self, suffix: str) -> str:
        self.named.append(PREFIX + suffix)
        return self.named[-1]

    def spec(self, name: str, behaviour: Behaviour = Behaviour.NORMAL, **fields: Any) -> dict[str, Any]:
        script = f": {name}; {SCRIPTS[behaviour]}"  # names the workload's processes for the leftover check
        return {
            "name": name,
            "kind": "container",
            "memory": "64MiB",
            "container": {
                "rootfs": {"type": "oci-layout", "path": str(self.image)},
                "command": ["sh", "-c", script],
            },
            **fields,
        }

    def bad_spec(self, name: str) -> tuple[dict[str, Any], str]:
        spec = self.spec(name)
        spec["container"]["mounts"] = [{"source": "/nonexistent/vmhost-data", "target": "/data"}]
        return spec, "container.mounts.0.source"

    def wait_running(self, engine: Engine, name: str, times: int = 1, timeout: float = 30.0) -> None:
        wait_for_log(engine, name, READY, times, timeout)

    def crash(self, engine: Engine, name: str) -> None:
        pid = engine.driver.info(name).pid
        assert pid, f"{name} has no container process"
        os.kill(pid, signal.SIGKILL)

    def leftovers(self, engine: Engine, name: str) -> list[str]:
        found = []
        state_dir = engine.config.data_dir / "containers"
        for where in (state_dir / "runc" / name, state_dir / "index" / name):
            if where.exists() or where.is_symlink():
                found.append(str(where))
        processes = subprocess.run(["pgrep", "-f", f"{name}[ ;]"], capture_output=True, text=True, check=False)
        found += [f"process {pid}" for pid in processes.stdout.split()]
        return found

    def skip_reason(self, case: str) -> str:
        return f"{case} does not apply"


@pytest.fixture(scope="session")
def busybox_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return busybox_layout(tmp_path_factory.mktemp("oci") / "busybox")


@pytest.fixture
def runc_harness(busybox_image: Path) -> RuncHarness:
    return RuncHarness(busybox_image)
