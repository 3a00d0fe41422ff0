"""Render hooks: plugins' changes to the domain XML, checked against libvirt's schema after each one."""

from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree

from vmhost.errors import RenderHookError
from vmhost.render.libvirt.schema import validate_domain_xml
from vmhost.spec import VMSpec

SHOWN_SCHEMA_ERRORS = 3


@dataclass(frozen=True)
class RenderHook:
    owner: str
    """The plugin's name: errors name it."""
    apply: Callable[[VMSpec, etree._Element], None]
    """Changes the <domain> tree in place (add a device, set a driver option)."""


def apply_hooks(spec: VMSpec, domain: etree._Element, hooks: tuple[RenderHook, ...]) -> None:
    """Each hook in turn; one that fails, or leaves a document libvirt would refuse, is named in the error."""
    for hook in hooks:
        try:
            hook.apply(spec, domain)
        except Exception as exc:
            raise RenderHookError(f"plugin {hook.owner}'s render hook failed for {spec.name}: {exc}") from exc
        problems = validate_domain_xml(domain)
        if problems:
            raise RenderHookError(
                f"plugin {hook.owner}'s render hook made a domain libvirt's schema rejects for {spec.name}",
                "; ".join(problems[:SHOWN_SCHEMA_ERRORS]),
            )
