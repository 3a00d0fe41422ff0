"""Platform features and what the hypervisor does on guest power events."""

from typing import Literal

from pydantic import Field

from vmhost.spec.base import SpecModel


class Features(SpecModel):
    acpi: bool = Field(True, description="Needed for graceful (ACPI power button) shutdown.")
    apic: bool = True
    pae: bool = True
    hide_kvm: bool = Field(False, description="Hide the KVM signature from the guest.")
    hyperv: bool = Field(False, description="Hyper-V enlightenments for Windows guests.")


class LifecycleActions(SpecModel):
    on_poweroff: Literal["destroy", "restart", "preserve", "rename-restart"] = "destroy"
    on_reboot: Literal["restart", "destroy", "preserve", "rename-restart"] = "restart"
    on_crash: Literal["destroy", "restart", "preserve", "coredump-destroy", "coredump-restart"] = "destroy"
