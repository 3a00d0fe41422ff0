"""What the xen driver keeps per VM: xl keeps nothing for a domain that is not running, so the driver writes
the VM's xl.cfg into its directory and a small JSON record (spec, owner, where the cfg is) under its own."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmhost.host.files import PRIVATE_FILE, atomic_write


@dataclass(frozen=True)
class Record:
    name: str
    uuid: str
    config: Path
    spec: dict[str, Any]
    owner: str


def write_private(path: Path, text: str) -> None:
    """Atomically and durably, readable by root only: the spec and the cfg may hold a display password."""
    atomic_write(path, text, PRIVATE_FILE)


class Records:
    def __init__(self, directory: Path):
        self.directory = directory

    def _path(self, name: str) -> Path:
        return self.directory / f"{name}.json"

    def write(self, record: Record) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        document = {
            "uuid": record.uuid,
            "config": str(record.config),
            "spec": record.spec,
            "owner": record.owner,
        }
        write_private(self._path(record.name), json.dumps(document, indent=2, sort_keys=True))

    def read(self, name: str) -> Record | None:
        try:
            document = json.loads(self._path(name).read_text())
        except FileNotFoundError:
            return None
        return Record(name, document["uuid"], Path(document["config"]), document["spec"], document["owner"])

    def remove(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def names(self) -> list[str]:
        return sorted(path.stem for path in self.directory.glob("*.json"))
