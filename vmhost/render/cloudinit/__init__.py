"""Render a VMSpec's NoCloud seed (meta-data, user-data, network-config): pure, deterministic, no host access.

The seed is built when the spec has a cloud_init block or a NIC with guest settings; its instance-id is a hash of
everything else in it, so cloud-init in the guest sees a new instance (and applies the seed again) exactly when
the content changed.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

from vmhost.render.cloudinit.network import network_config
from vmhost.render.cloudinit.text import dump
from vmhost.render.cloudinit.userdata import user_data
from vmhost.spec import VMSpec
from vmhost.spec.cdrom import Cdrom
from vmhost.spec.checks import BUS_PREFIX
from vmhost.spec.disk import Disk
from vmhost.spec.targets import LETTERS, _letters

__all__ = ["Seed", "needs_seed", "render_seed", "seed_cdrom"]

SEED_BUS = "scsi"
"""The libvirt renderer puts this SCSI CD-ROM on a virtio-scsi controller: every cloud kernel has virtio_scsi and
sr_mod, while Debian's cloud kernel (the genericcloud images) has neither AHCI (SATA) nor sym53c8xx (LSI SCSI)."""
NAMES = len(LETTERS) * (len(LETTERS) + 1)
"""sda..sdz, sdaa..sdzz: the names a Cdrom target can have."""
VOLUME_ID = "cidata"
"""The NoCloud datasource finds its seed by this volume label."""


@dataclass(frozen=True)
class Seed:
    """The three files of a NoCloud seed, as text."""

    instance_id: str
    hostname: str
    user_data: str
    network_config: str

    @property
    def meta_data(self) -> str:
        return dump({"instance-id": self.instance_id, "local-hostname": self.hostname})

    def files(self) -> dict[str, str]:
        return {"meta-data": self.meta_data, "user-data": self.user_data, "network-config": self.network_config}


def needs_seed(spec: VMSpec) -> bool:
    """VMs with something to tell cloud-init; containers are configured by their runtime instead."""
    return spec.kind == "vm" and (spec.cloud_init is not None or any(nic.configures_guest() for nic in spec.nics))


def render_seed(spec: VMSpec) -> Seed:
    hostname = (spec.cloud_init.hostname if spec.cloud_init else None) or spec.name
    users, network = user_data(spec), network_config(spec)
    digest = hashlib.sha256("\0".join([str(spec.uuid), hostname, users, network]).encode()).hexdigest()
    return Seed(instance_id=f"iid-{digest[:16]}", hostname=hostname, user_data=users, network_config=network)


def seed_cdrom(spec: VMSpec, iso: Path) -> Cdrom:
    """The seed's read-only SCSI drive, named from the far end (sdzz, then sdzy...): disks are named from sda up
    and a VM has at most DEVICE_LIMIT devices, so no disk added later (live too) wants the seed's name. The name is
    only libvirt's: the drive's address comes from controllers.scsi_layout; the guest sees a CD-ROM (srN)."""
    devices: list[Disk | Cdrom] = [*spec.disks, *spec.cdroms]
    used = {device.target for device in devices}
    prefix = BUS_PREFIX[SEED_BUS]
    index = next(i for i in reversed(range(NAMES)) if f"{prefix}{_letters(i)}" not in used)
    return Cdrom(iso=iso, bus=SEED_BUS, target=f"{prefix}{_letters(index)}")
