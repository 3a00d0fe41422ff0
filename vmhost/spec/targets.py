"""Guest device names (vda, sdb, hdc) for disks and cdroms that do not name one.

A VM has at most DEVICE_LIMIT disks and cdroms: beyond that the machine runs out of slots anyway (q35 gives each
virtio disk a PCIe root port, 256 buses in all), one create would make hundreds of images, and a bus's 702
names (a..z, aa..zz, as the kernel names disks) could run out. So naming can never fail.
"""

import string

from vmhost.spec.cdrom import Cdrom
from vmhost.spec.checks import BUS_PREFIX
from vmhost.spec.disk import Disk
from vmhost.spec.errors import Problem, SpecError
from vmhost.spec.vm import VMSpec

DEVICE_LIMIT = 256
LETTERS = string.ascii_lowercase


def _letters(index: int) -> str:
    """0 → a, 25 → z, 26 → aa (the kernel's disk naming)."""
    return LETTERS[index] if index < len(LETTERS) else LETTERS[index // 26 - 1] + LETTERS[index % 26]


def assign_targets(spec: VMSpec) -> VMSpec:
    """Give every disk and cdrom without a target the next free name for its bus, in spec order."""
    devices: list[Disk | Cdrom] = [*spec.disks, *spec.cdroms]
    if len(devices) > DEVICE_LIMIT:
        problem = f"a VM has at most {DEVICE_LIMIT} disks and cdroms; this one has {len(devices)}"
        raise SpecError([Problem("disks" if len(spec.disks) > len(spec.cdroms) else "cdroms", problem)])
    used = {device.target for device in devices if device.target}
    for device in devices:
        if device.target is None:
            prefix = BUS_PREFIX[device.bus]
            index = 0
            while f"{prefix}{_letters(index)}" in used:
                index += 1
            device.target = f"{prefix}{_letters(index)}"
            used.add(device.target)
    return spec
