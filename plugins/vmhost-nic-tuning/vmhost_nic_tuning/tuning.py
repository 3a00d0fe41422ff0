"""Turn features off on a VM's host-side devices, check that they are off, and keep a record of it."""

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vmhost.errors import HostResourceError
from vmhost.plugins.api import atomic_write
from vmhost_nic_tuning import ethtool

RECORD_FILE = "nic-tuning.json"
DEVICE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,14}$")


@dataclass(frozen=True)
class DeviceTuning:
    device: str
    features: list[str]
    before: dict[str, bool]
    """Each feature's state (on = True) before, under the name `ethtool -k` lists it."""
    after: dict[str, bool]


@dataclass(frozen=True)
class TuningRecord:
    """What the plugin did at a VM's last start."""

    vm: str
    domain_state: str
    """The domain's state when the hook ran: paused, as the guest has not run yet."""
    devices: list[DeviceTuning] = field(default_factory=list)

    def save(self, vm_dir: Path) -> None:
        atomic_write(vm_dir / RECORD_FILE, json.dumps(asdict(self), indent=2) + "\n")


def load_record(vm_dir: Path) -> dict[str, Any] | None:
    path = vm_dir / RECORD_FILE
    if not path.is_file():
        return None
    record: dict[str, Any] = json.loads(path.read_text())
    return record


def forget(vm_dir: Path) -> None:
    (vm_dir / RECORD_FILE).unlink(missing_ok=True)


def tune(command: str, device: str, features: Sequence[str]) -> DeviceTuning:
    """Refuses (HostResourceError) when ethtool fails or a feature is still on afterwards."""
    _check_device(device)
    names = [ethtool.listed_name(feature) for feature in features]
    before = _pick(ethtool.features_of(command, device), names, device)
    ethtool.run(ethtool.disable_argv(command, device, features))
    after = _pick(ethtool.features_of(command, device), names, device)
    still_on = [name for name, on in after.items() if on]
    if still_on:
        raise HostResourceError(f"{device}: {', '.join(still_on)} still on after `ethtool -K` turned them off")
    return DeviceTuning(device=device, features=list(features), before=before, after=after)


def _check_device(device: str) -> None:
    """The driver's word for a device goes on ethtool's command line: a name, never an option."""
    if not DEVICE_NAME.match(device):
        raise HostResourceError(f"{device!r} is not a network device name ethtool can be given")


def _pick(listed: dict[str, bool], names: Sequence[str], device: str) -> dict[str, bool]:
    missing = [name for name in names if name not in listed]
    if missing:
        raise HostResourceError(f"{device}: `ethtool -k` does not list {', '.join(missing)}")
    return {name: listed[name] for name in names}
