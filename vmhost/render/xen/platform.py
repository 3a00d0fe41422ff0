"""Platform features and the guest clock: acpi, apic, pae, viridian (HVM only) and localtime."""

from vmhost.render.xen.context import Problems
from vmhost.render.xen.domain import domain_type
from vmhost.render.xen.values import Settings, flag
from vmhost.spec import VMSpec


def platform_settings(spec: VMSpec) -> Settings:
    settings: Settings = {}
    if domain_type(spec) == "hvm":
        features = spec.features
        settings |= {
            "acpi": flag(features.acpi),
            "apic": flag(features.apic),
            "pae": flag(features.pae),
            "viridian": flag(features.hyperv),
        }
    if spec.clock.offset == "localtime":
        settings["localtime"] = flag(True)
    return settings


def platform_problems(spec: VMSpec) -> Problems:
    problems: Problems = []
    if spec.clock.timers:
        problems.append(("clock.timers", "per-timer settings are not supported on the xen driver"))
    if not spec.smbios.is_empty():
        problems.append(("smbios", "SMBIOS strings are not supported on the xen driver"))
    if spec.cpu.features:
        problems.append(("cpu.features", "CPU flags are not supported on the xen driver"))
    if spec.cpu.emulator_pinning is not None:
        problems.append(("cpu.emulator_pinning", "the device model's CPUs are not set by the xen driver"))
    if spec.features.suspend_to_mem is not None or spec.features.suspend_to_disk is not None:
        problems.append(("features.suspend_to_mem", "ACPI S3/S4 settings are not supported on the xen driver"))
    if spec.memory.access == "shared":
        problems.append(("memory.access", "shared guest memory is not supported on the xen driver"))
    if spec.features.hyperv_synic or spec.features.hyperv_vendor_id:
        problems.append(("features.hyperv", "only the base viridian enlightenments are supported on the xen driver"))
    return problems
