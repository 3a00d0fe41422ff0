"""Platform features and what the hypervisor does on guest power events."""

from typing import Literal

from pydantic import Field

from vmhost.spec.base import SpecModel


class Features(SpecModel):
    """Platform features."""

    acpi: bool = Field(True, description="Needed for graceful (ACPI power button) shutdown.")
    apic: bool = Field(True, description="Local APIC.")
    pae: bool = Field(True, description="Physical address extension.")
    hide_kvm: bool = Field(False, description="Hide the KVM signature from the guest.")
    hyperv: bool = Field(False, description="Hyper-V enlightenments for Windows guests.")


class LifecycleActions(SpecModel):
    """What the hypervisor does when the guest powers off, reboots or crashes."""

    on_poweroff: Literal["destroy", "restart"] = Field("destroy", description="Guest powered off.")
    on_reboot: Literal["restart", "destroy"] = Field("restart", description="Guest rebooted.")
    on_crash: Literal["destroy", "restart", "preserve", "coredump-destroy", "coredump-restart"] = Field(
        "destroy", description="Guest crashed (panic device or hypervisor-detected)."
    )
