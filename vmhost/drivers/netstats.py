"""A NIC's counters from the host end of its link (the kernel's /sys/class/net/<dev>/statistics), turned round to
the guest's view: what the host end receives, the guest transmitted."""

import contextlib
from pathlib import Path

from vmhost.drivers.base import NicIO

SYSFS = Path("/sys")


def host_end_io(device: str, sysfs: Path = SYSFS) -> NicIO | None:
    """None when the device is gone (the VM stopped between the listing and the read)."""
    statistics = sysfs / "class/net" / device / "statistics"
    counters: dict[str, int] = {}
    for counter in ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets"):
        with contextlib.suppress(OSError, ValueError):
            counters[counter] = int((statistics / counter).read_text())
    if not counters:
        return None
    return NicIO(
        device,
        receive_bytes=counters.get("tx_bytes"),
        transmit_bytes=counters.get("rx_bytes"),
        receive_packets=counters.get("tx_packets"),
        transmit_packets=counters.get("rx_packets"),
    )
