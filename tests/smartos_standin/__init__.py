"""The vmadm stand-in (tests/smartos_standin/vmadm) and helpers for tests to read and steer its state."""

import contextlib
import fcntl
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

EXECUTABLE = Path(__file__).parent / "vmadm"


class Standin:
    """One stand-in state directory: what its VMs are, what it was asked, and the test controls."""

    def __init__(self, root: Path):
        self.root = root

    @contextlib.contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            path = self.root / "state.json"
            data = json.loads(path.read_text()) if path.exists() else {"vms": {}, "controls": {}}
            yield data
            path.write_text(json.dumps(data, indent=2))

    def argv(self) -> list[list[str]]:
        """Every command run so far, without the executable's path."""
        log = self.root / "argv.log"
        return [json.loads(line)[1:] for line in log.read_text().splitlines()] if log.exists() else []

    def changes(self) -> list[list[str]]:
        """The commands that change something (not list/get/lookup)."""
        return [args for args in self.argv() if args[0] not in ("list", "get", "lookup")]

    def vms(self) -> dict[str, dict[str, Any]]:
        with self._state() as data:
            return dict(data["vms"])

    def vm(self, alias: str) -> dict[str, Any]:
        return next(vm for vm in self.vms().values() if vm.get("alias") == alias)

    def ignore_stop(self, alias: str) -> None:
        self.control(alias, "ignore_stop", True)

    def control(self, alias: str, key: str, value: Any) -> None:
        """A guest's behaviour: ignore_stop, stop_seconds (how long it takes to power off)."""
        with self._state() as data:
            data["controls"].setdefault(alias, {})[key] = value

    def set_global(self, key: str, value: Any) -> None:
        """vmadm's own circumstances: cannot_run (its refusal), reboot_stop_timeout (bhyve reboot's 10 s)."""
        with self._state() as data:
            data["controls"][key] = value

    def set_state(self, alias: str, state: str) -> None:
        """What happens outside vmadm's commands: a guest poweroff or crash (stopped), a failed provision."""
        with self._state() as data:
            for vm in data["vms"].values():
                if vm.get("alias") == alias:
                    vm["state"] = state
                    vm.pop("pid", None)
