"""Render a VMSpec as an xl.cfg(5) domain configuration: pure, deterministic, no host access.

Each module turns one concern into xl settings and says what of it xl cannot express; this module checks
those problems first, then joins the settings in a stable order and serializes them once.
"""

from collections.abc import Callable

from vmhost.render.hooks import apply_document_hooks
from vmhost.render.xen.actions import action_settings
from vmhost.render.xen.boot import boot_problems, boot_settings
from vmhost.render.xen.context import Problems, XenContext
from vmhost.render.xen.disks import disk_problems, disk_settings
from vmhost.render.xen.display import display_problems, display_settings
from vmhost.render.xen.domain import domain_problems, domain_settings, domain_type
from vmhost.render.xen.pci import passthrough_problems, pci_settings
from vmhost.render.xen.platform import platform_problems, platform_settings
from vmhost.render.xen.values import Settings, serialize
from vmhost.render.xen.vifs import vif_problems, vif_settings
from vmhost.spec import VMSpec

__all__ = ["XenContext", "domain_type", "problems", "render_settings", "render_xl_cfg"]

PROBLEM_CHECKS: list[Callable[[VMSpec], Problems]] = [
    domain_problems,
    boot_problems,
    platform_problems,
    disk_problems,
    vif_problems,
    passthrough_problems,
    display_problems,
]


def problems(spec: VMSpec) -> Problems:
    """(path, message) for every part of the spec xl cannot express; empty means render_xl_cfg will work."""
    return sorted(problem for check in PROBLEM_CHECKS for problem in check(spec))


def render_settings(spec: VMSpec, ctx: XenContext) -> Settings:
    """Raises ValueError naming what xl cannot express, or what the engine left unresolved in ctx."""
    found = problems(spec)
    if found:
        raise ValueError("; ".join(f"{path}: {message}" for path, message in found))
    return {
        **domain_settings(spec),
        **boot_settings(spec),
        **platform_settings(spec),
        **disk_settings(spec, ctx),
        **vif_settings(spec),
        **pci_settings(spec),
        **display_settings(spec),
        **action_settings(spec),
    }


def render_xl_cfg(spec: VMSpec, ctx: XenContext) -> str:
    """The xl.cfg text for a spec that went through parse_spec(), after the plugins' render_xl hooks (which set
    XlString, XlNumber or XlList values under xl.cfg keys)."""
    settings = render_settings(spec, ctx)
    apply_document_hooks(spec, settings, ctx.hooks, "xl.cfg", serialize)
    return serialize(settings)
