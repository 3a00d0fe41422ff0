"""Plugins' render hooks on the renderers whose document is a dict: xl.cfg settings, the vmadm payload, the OCI
config. Each hook changes the document in place; the renderer's own check then says whether it can still be
written, and an error names the plugin. (libvirt's hooks work on the XML tree: vmhost.render.libvirt.hooks.)
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from vmhost.errors import RenderHookError
from vmhost.spec import VMSpec


@dataclass(frozen=True)
class DocumentHook:
    owner: str
    """The plugin's name: errors name it."""
    apply: Callable[[VMSpec, dict[str, Any]], None]


def apply_document_hooks(
    spec: VMSpec,
    document: dict[str, Any],
    hooks: Sequence[DocumentHook],
    what: str,
    check: Callable[[dict[str, Any]], object],
) -> None:
    """Each hook in turn, `check` after each (it raises ValueError or TypeError for a document it cannot write)."""
    for hook in hooks:
        try:
            hook.apply(spec, document)
        except Exception as exc:
            raise RenderHookError(f"plugin {hook.owner}'s {what} render hook failed for {spec.name}: {exc}") from exc
        try:
            check(document)
        except (TypeError, ValueError) as exc:
            raise RenderHookError(
                f"plugin {hook.owner}'s {what} render hook left the {what} of {spec.name} unwritable",
                str(exc),
            ) from None
