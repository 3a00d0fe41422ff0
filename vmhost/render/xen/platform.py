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
    if spec.clock.timers:
        return [("clock.timers", "per-timer settings are not supported on the xen driver")]
    return []
