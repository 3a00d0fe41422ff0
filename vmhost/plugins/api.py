"""The plugin API (version API_VERSION): what a plugin package subclasses, and everything it may override.

A plugin is an installed Python package exposing a VmhostPlugin subclass under the entry point group
`vmhost.plugins`. Every hook is optional; the ones a plugin overrides are the ones it has. The API's major
version changes when a hook changes incompatibly; a plugin declares the version it was built for and a core
with another major version (or an older minor one) refuses to load it.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from lxml import etree
from pydantic import BaseModel

from vmhost.engine.hooks import HookContext, Phase
from vmhost.spec import VMSpec

if TYPE_CHECKING:
    import typer
    from fastapi import APIRouter

    from vmhost.api.agent import Agent

API_VERSION = "1.0"
ENTRY_POINT_GROUP = "vmhost.plugins"

LIFECYCLE_METHODS: dict[Phase, str] = {
    Phase.BEFORE_CREATE: "before_create",
    Phase.AFTER_CREATE: "after_create",
    Phase.START_PAUSED: "start_paused",
    Phase.AFTER_START: "after_start",
    Phase.BEFORE_STOP: "before_stop",
    Phase.AFTER_STOP: "after_stop",
    Phase.BEFORE_DELETE: "before_delete",
    Phase.AFTER_DELETE: "after_delete",
}
"""Phase → the VmhostPlugin method that hooks it."""


@dataclass(frozen=True)
class Listener:
    """A listener of the plugin's own (e.g. for a management plane that expects a second agent port).

    It serves `router` on `port`, on the agent's listen address, with the agent's TLS and token rules.
    """

    port: int
    router: "APIRouter"


class VmhostPlugin:
    name: ClassVar[str]
    """Lower-case letters, digits and '-'; the key of its spec block, its URL prefix and its CLI group."""
    version: ClassVar[str] = "0"
    api_version: ClassVar[str] = API_VERSION
    priority: ClassVar[int] = 100
    """Lower runs first, in every hook kind; equal priorities run in name order."""
    spec_model: ClassVar[type[BaseModel] | None] = None
    """The model of the spec block `extensions.<name>`, validated with the rest of the spec."""

    def __init__(self) -> None:
        self.settings: Mapping[str, Any] = {}

    def configure(self, settings: Mapping[str, Any]) -> None:
        """The config file's `[plugins.<name>]` table (without `enabled`); raise to refuse bad settings."""
        self.settings = settings

    # ---- render -----------------------------------------------------------------------------------

    def render(self, spec: VMSpec, domain: etree._Element) -> None:
        """Change the libvirt <domain> tree before define; the result must still pass libvirt's schema."""

    # ---- lifecycle (pre-hooks may raise to refuse; post-hooks' errors are reported) -------------------

    def before_create(self, ctx: HookContext) -> None: ...

    def after_create(self, ctx: HookContext) -> None: ...

    def start_paused(self, ctx: HookContext) -> None:
        """The paused window of the two-phase start: host-side wiring before the guest runs."""

    def after_start(self, ctx: HookContext) -> None: ...

    def before_stop(self, ctx: HookContext) -> None: ...

    def after_stop(self, ctx: HookContext) -> None: ...

    def before_delete(self, ctx: HookContext) -> None: ...

    def after_delete(self, ctx: HookContext) -> None: ...

    # ---- interfaces -------------------------------------------------------------------------------

    def router(self, agent: "Agent") -> "APIRouter | None":
        """Routes mounted under /ext/<name> on the agent's server, behind its token."""
        return None

    def dialect_router(self, agent: "Agent") -> "APIRouter | None":
        """Routes mounted at the server's root, for a management plane's own paths (e.g. ZStack's /vm/start).

        A path another plugin or the core already serves refuses this plugin.
        """
        return None

    def listeners(self, agent: "Agent") -> "list[Listener]":
        return []

    def cli(self) -> "typer.Typer | None":
        """Commands added as `vmhost <name> ...`."""
        return None


def overridden(plugin: VmhostPlugin, method: str) -> bool:
    return getattr(type(plugin), method) is not getattr(VmhostPlugin, method)
