"""The root of a VM spec."""

import uuid as uuidlib
from typing import Any, Literal

from pydantic import Field, field_validator

from vmhost.spec.base import SpecModel
from vmhost.spec.boot import Boot
from vmhost.spec.cdrom import Cdrom
from vmhost.spec.clock import Clock
from vmhost.spec.cloud_init import CloudInit
from vmhost.spec.console import Console
from vmhost.spec.container import Container
from vmhost.spec.cpu import Cpu
from vmhost.spec.disk import Disk
from vmhost.spec.extensions import validate_blocks
from vmhost.spec.features import Features, LifecycleActions
from vmhost.spec.graphics import Graphics
from vmhost.spec.iothreads import IoThreads
from vmhost.spec.memory import Memory
from vmhost.spec.nic import Nic
from vmhost.spec.numa import NumaCell
from vmhost.spec.passthrough import Passthrough, Usb
from vmhost.spec.restart import RestartBackoff
from vmhost.spec.smartos import Smartos
from vmhost.spec.smbios import Smbios
from vmhost.spec.startup import Startup

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
LABEL_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"

Accel = Literal["kvm", "tcg"]


def _not_a_uuid(value: str) -> str:
    """VMs are looked up by name or UUID: a name that parses as a UUID could shadow another VM."""
    try:
        uuidlib.UUID(value)
    except ValueError:
        return value
    raise ValueError("must not look like a UUID (VMs are found by name or UUID)")


class VMSpec(SpecModel):
    """Everything vmhost needs to define, start and keep one virtual machine."""

    name: str = Field(
        pattern=NAME_PATTERN,
        description="Unique on the host: letters, digits, '-', '_', '.'; starts with a letter or digit; ≤63 chars.",
    )
    uuid: uuidlib.UUID = Field(default_factory=uuidlib.uuid4, description="Generated when omitted.")

    _name = field_validator("name")(_not_a_uuid)
    kind: Literal["vm", "container"] = Field(
        "vm", description="vm: a virtual machine on the host's VM driver; container: an OCI container on runc."
    )
    container: Container | None = Field(None, description="What a `kind: container` spec runs; required for one.")
    description: str = Field("", max_length=1024, description="Free text for operators.")
    labels: dict[str, str] = Field(
        default_factory=dict, description="Key/value metadata, kept in the domain's vmhost metadata."
    )
    accel: Accel | None = Field(None, description="kvm or tcg; default: the host config's accel.")
    cpu: Cpu = Field(default_factory=Cpu, description="vCPUs, topology, model, weight, pinning.")
    memory: Memory = Field(description="Memory size, or a block with hotplug/balloon/hugepages.")
    numa: list[NumaCell] = Field(default_factory=list, description="Guest NUMA cells; omit for one node.")
    boot: Boot = Field(default_factory=Boot, description="Firmware, boot order, kernel boot, machine.")
    disks: list[Disk] = Field(default_factory=list, description="Disks in guest order.")
    cdroms: list[Cdrom] = Field(default_factory=list, description="CD-ROM drives.")
    iothreads: IoThreads = Field(default_factory=IoThreads, description="IOThreads for disk I/O, and their pins.")
    nics: list[Nic] = Field(default_factory=list, description="Network interfaces in guest order.")
    graphics: Graphics | None = Field(None, description="Omit for a headless VM.")
    cloud_init: CloudInit | None = Field(
        None, description="A NoCloud seed (attached as a read-only CD-ROM) for the guest's cloud-init."
    )
    console: Console = Field(default_factory=Console, description="Serial console settings.")
    passthrough: Passthrough = Field(default_factory=Passthrough, description="Host PCI/USB devices.")
    usb: Usb = Field(default_factory=Usb, description="USB controller and SPICE redirection.")
    guest_agent: bool = Field(True, description="virtio-serial channel org.qemu.guest_agent.0.")
    clock: Clock = Field(default_factory=Clock, description="Guest clock offset and timers.")
    features: Features = Field(default_factory=Features, description="ACPI, APIC, PAE, Hyper-V, KVM hiding.")
    smbios: Smbios = Field(default_factory=Smbios, description="SMBIOS serial, asset tag and OEM strings.")
    restart_policy: Literal["never", "on-crash", "always"] = Field(
        "never",
        description="on-crash: restart after QEMU or the guest crashes; always: also after the guest powers off. "
        "A stop or kill through vmhost is never undone.",
    )
    restart_backoff: RestartBackoff = Field(
        default_factory=RestartBackoff, description="Delays and retry limit of restarts."
    )
    autostart: bool = Field(False, description="Start when the agent starts (e.g. after a host boot).")
    startup: Startup = Field(default_factory=Startup, description="Order, delay and readiness at restore.")
    smartos: Smartos | None = Field(None, description="SmartOS-only settings (vmadm tags, passthrough, ...).")
    lifecycle: LifecycleActions = Field(
        default_factory=LifecycleActions, description="What the hypervisor does on guest poweroff/reboot/crash."
    )
    extensions: dict[str, Any] = Field(
        default_factory=dict, description="Blocks of installed plugins, keyed by plugin name (see `vmhost plugins`)."
    )

    _extensions = field_validator("extensions")(validate_blocks)

    def extension(self, name: str) -> Any:
        """A plugin's validated block, or None when the spec has none."""
        return self.extensions.get(name)
