"""The spec block `extensions: {"ex-start": {...}}`: devices a plain vmhost spec has no field for."""

from typing import Literal

from pydantic import Field

from vmhost.spec.base import SpecModel

PLUGIN = "ex-start"
"""The plugin's name: the key of its spec block, its CLI group."""

WatchdogModel = Literal["i6300esb", "ib700", "diag288"]
"""What libvirt 9.0 (Debian 12) accepts; its iTCO model (q35) needs libvirt 9.1."""
WatchdogAction = Literal["reset", "shutdown", "poweroff", "pause", "none", "dump", "inject-nmi"]


class Watchdog(SpecModel):
    """A virtual watchdog: the guest must keep petting it, or the hypervisor acts."""

    model: WatchdogModel = Field(description="i6300esb (PCI, any x86 machine), ib700 (ISA), diag288 (s390x).")
    action: WatchdogAction = Field("reset", description="What the hypervisor does when the guest stops petting it.")


class ExStartBlock(SpecModel):
    """What the extended start command adds to a VM's spec."""

    watchdog: Watchdog | None = Field(None, description="A watchdog device.")
