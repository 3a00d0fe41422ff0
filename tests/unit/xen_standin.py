"""Drives tests/xen_standin/xl, the stand-in for Xen's `xl`: put it on PATH, read the argv it was given,
flip its test controls (a guest that ignores shutdown, has no PV drivers, a crash, a failing command) and stop
the per-domain monitor processes it started (xl's daemonized `xl create`) when a test ends."""

import contextlib
import fcntl
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.eventually import eventually

STANDIN_DIR = Path(__file__).parents[1] / "xen_standin"
QUERIES = {"list", "info", "domid"}
"""Read-only subcommands, left out of argv sequences that assert what was done."""
REASON_LETTERS = "-rscwS"


class StandIn:
    def __init__(self, state: Path):
        self.state = state
        state.mkdir(parents=True, exist_ok=True)

    @property
    def command(self) -> str:
        return str(STANDIN_DIR / "xl")

    @contextlib.contextmanager
    def _edit(self) -> Iterator[dict[str, Any]]:
        """Under the stand-in's own lock, so a monitor or a running xl never loses the change."""
        with (self.state / "lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            path = self.state / "domains.json"
            data = json.loads(path.read_text()) if path.exists() else {}
            for key, empty in (("next_domid", 1), ("domains", {}), ("assignable", []), ("controls", {})):
                data.setdefault(key, empty)
            yield data
            path.write_text(json.dumps(data, indent=2, sort_keys=True))

    def _load(self) -> dict[str, Any]:
        with self._edit() as data:
            return data

    def argvs(self, include_queries: bool = False) -> list[list[str]]:
        log = self.state / "argv.log"
        lines = log.read_text().splitlines() if log.exists() else []
        argvs = [json.loads(line) for line in lines]
        return [argv for argv in argvs if include_queries or not QUERIES & set(argv[:1])]

    def boots(self, name: str) -> int:
        """How many times the guest `name` has finished booting (the stand-in's "it is up")."""
        return sum(1 for up in self._load().get("boots", {}).get(name, []) if up <= time.time())

    def forget_argvs(self) -> None:
        (self.state / "argv.log").unlink(missing_ok=True)

    def domains(self) -> dict[str, dict[str, Any]]:
        """By name, each with the state flags `xl list` shows for it."""
        return {d["name"]: {**d, "flags": _flags(d)} for d in self._load()["domains"].values()}

    def add_control(self, key: str, name: str) -> None:
        with self._edit() as data:
            data["controls"].setdefault(key, []).append(name)

    def ignore_shutdown(self, name: str) -> None:
        self.add_control("ignore_shutdown", name)

    def set_control(self, key: str, value: Any) -> None:
        with self._edit() as data:
            data["controls"][key] = value

    def fail_next(self, command: str, stderr: str, rc: int = 1) -> None:
        with self._edit() as data:
            data["controls"].setdefault("fail", {})[command] = {"stderr": stderr, "rc": rc}

    def add_domain(self, name: str, domid: int, **fields: Any) -> None:
        """A domain vmhost did not make (another guest, say), at a given domid."""
        with self._edit() as data:
            data["domains"][str(domid)] = {
                "name": name,
                "domid": domid,
                "uuid": f"00000000-0000-4000-8000-{domid:012d}",
                "type": "pvh",
                "memory": 128,
                "vcpus": 1,
                "on_poweroff": "destroy",
                "on_reboot": "restart",
                "on_crash": "destroy",
                "cmdline": "",
                "paused": False,
                "cpu_time": 0.0,
                **fields,
            }
            data["next_domid"] = max(data["next_domid"], domid + 1)

    def crash(self, name: str, timeout: float = 5.0) -> None:
        """The guest crashes (shutdown reason crash); xl's monitor then applies on_crash. Returns once it has
        (preserve keeps the shell listed as shut down, 'c')."""
        with self._edit() as data:
            crashed = next(d for d in data["domains"].values() if d["name"] == name)
            crashed["shutdown"] = 3
        if crashed["on_crash"] == "preserve":
            return
        eventually(
            lambda: all(d.get("domid") != crashed["domid"] for d in self.domains().values()),
            timeout,
            0.05,
            f"a monitor acted on the crash of {name}",
        )

    def monitors(self) -> list[int]:
        """The pids of the stand-in's live per-domain monitors."""
        return [int(path.stem) for path in (self.state / "monitors").glob("*.pid")]

    def stop_monitors(self) -> None:
        """Only processes that still run the stand-in (a pid file left by a killed monitor may be reused)."""
        for pid in self.monitors():
            try:
                running = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                running = b""
            if self.command.encode() in running.split(b"\0"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            (self.state / "monitors" / f"{pid}.pid").unlink(missing_ok=True)

    def environment(self) -> dict[str, str]:
        return {"XL_STANDIN_STATE": str(self.state), "PATH": f"{STANDIN_DIR}{os.pathsep}{os.environ['PATH']}"}


def _flags(domain: dict[str, Any]) -> str:
    shutdown = domain.get("shutdown")
    paused = domain.get("paused", False)
    return (
        "-"
        + ("b" if not paused and shutdown is None else "-")
        + ("p" if paused else "-")
        + ("s" if shutdown is not None else "-")
        + (REASON_LETTERS[shutdown] if shutdown is not None else "-")
        + "-"
    )


@pytest.fixture
def standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    """A stand-in xl on PATH for one test; the per-domain monitors it spawned are stopped when the test ends."""
    stand_in = StandIn(tmp_path / "xl-state")
    for key, value in stand_in.environment().items():
        monkeypatch.setenv(key, value)
    yield stand_in
    stand_in.stop_monitors()
