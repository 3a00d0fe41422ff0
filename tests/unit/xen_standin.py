"""Drives tests/xen_standin/xl, the stand-in for Xen's `xl`: put it on PATH, read the argv it was given,
and flip its test controls (a guest that ignores shutdown, a crash, a failing command)."""

import json
import os
import time
from pathlib import Path
from typing import Any

STANDIN_DIR = Path(__file__).parents[1] / "xen_standin"
QUERIES = {"list", "info", "domid"}
"""Read-only subcommands, left out of argv sequences that assert what was done."""


class StandIn:
    def __init__(self, state: Path):
        self.state = state
        state.mkdir(parents=True, exist_ok=True)

    @property
    def command(self) -> str:
        return str(STANDIN_DIR / "xl")

    def _load(self) -> dict[str, Any]:
        path = self.state / "domains.json"
        if not path.exists():
            return {"next_domid": 1, "domains": {}, "assignable": [], "controls": {}}
        return json.loads(path.read_text())

    def _save(self, data: dict[str, Any]) -> None:
        (self.state / "domains.json").write_text(json.dumps(data, indent=2, sort_keys=True))

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
        return {d["name"]: d for d in self._load()["domains"].values()}

    def ignore_shutdown(self, name: str) -> None:
        data = self._load()
        data["controls"].setdefault("ignore_shutdown", []).append(name)
        self._save(data)

    def fail_next(self, command: str, stderr: str, rc: int = 1) -> None:
        data = self._load()
        data["controls"].setdefault("fail", {})[command] = {"stderr": stderr, "rc": rc}
        self._save(data)

    def crash(self, name: str) -> None:
        """The guest crashes; xl's monitor applies on_crash (preserve keeps the shell as shut down, 'crash')."""
        data = self._load()
        for key, domain in list(data["domains"].items()):
            if domain["name"] == name:
                if domain["on_crash"] == "preserve":
                    domain["flags"] = "---sc-"
                else:
                    del data["domains"][key]
        self._save(data)

    def environment(self) -> dict[str, str]:
        return {"XL_STANDIN_STATE": str(self.state), "PATH": f"{STANDIN_DIR}{os.pathsep}{os.environ['PATH']}"}
