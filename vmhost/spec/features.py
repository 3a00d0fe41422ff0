"""Platform features and what the hypervisor does on guest power events."""

from typing import Literal

from pydantic import Field, model_validator

from vmhost.spec.base import SpecModel


class Features(SpecModel):
    """Platform features."""

    acpi: bool = Field(True, description="Needed for graceful (ACPI power button) shutdown.")
    apic: bool = Field(True, description="Local APIC.")
    pae: bool = Field(True, description="Physical address extension.")
    hide_kvm: bool = Field(False, description="Hide the KVM signature from the guest.")
    hyperv: bool = Field(False, description="Hyper-V enlightenments for Windows guests.")
    hyperv_synic: bool = Field(
        False,
        description="Hyper-V synthetic interrupts and timers (vpindex, synic, stimer), kvm only; needs hyperv and "
        "a hypervclock timer.",
    )
    vmport: bool = Field(True, description="false turns off the VMware backdoor I/O port.")
    suspend_to_mem: bool | None = Field(None, description="ACPI S3 for the guest; default: the hypervisor's.")
    suspend_to_disk: bool | None = Field(None, description="ACPI S4 for the guest; default: the hypervisor's.")
    hyperv_vendor_id: str | None = Field(
        None, pattern=r"^[^,]{1,12}$", description="Hyper-V vendor id the guest sees (needs hyperv), ≤12 chars."
    )

    @model_validator(mode="after")
    def _hyperv_parts_need_hyperv(self) -> "Features":
        if (self.hyperv_synic or self.hyperv_vendor_id) and not self.hyperv:
            raise ValueError("hyperv_synic and hyperv_vendor_id need hyperv: true")
        return self


class LifecycleActions(SpecModel):
    """What the hypervisor does when the guest powers off, reboots or crashes."""

    on_poweroff: Literal["destroy", "restart"] = Field("destroy", description="Guest powered off.")
    on_reboot: Literal["restart", "destroy"] = Field("restart", description="Guest rebooted.")
    on_crash: Literal["destroy", "restart", "preserve", "coredump-destroy", "coredump-restart"] = Field(
        "destroy", description="Guest crashed (panic device or hypervisor-detected)."
    )
