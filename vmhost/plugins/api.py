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
from vmhost.host import commands, files
from vmhost.render.xen.values import Settings
from vmhost.spec import VMSpec

if TYPE_CHECKING:
    import typer
    from fastapi import APIRouter

    from vmhost.api.agent import Agent

API_VERSION = "1.1"
ENTRY_POINT_GROUP = "vmhost.plugins"
run_command = commands.run
"""The core's host command runner (argv list, timeout, missing executable -> Unavailable) for plugins' own tools."""
atomic_write = files.atomic_write
"""The core's one writer of state files (temporary file, fsync, rename, fsync of the directory; 0600 by default)."""

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

    def render_xl(self, spec: VMSpec, cfg: Settings) -> None:
        """Change a Xen VM's xl.cfg settings before define: xl.cfg keys to XlString, XlNumber or XlList values
        (vmhost.render.xen.values); anything else is refused naming the plugin."""

    def render_vmadm(self, spec: VMSpec, payload: dict[str, Any]) -> None:
        """Change a SmartOS VM's vmadm payload before `vmadm create`/`update`; it must stay JSON, and vmhost's
        record in internal_metadata stays as it is."""

    def render_oci(self, spec: VMSpec, config: dict[str, Any]) -> None:
        """Change a container's OCI config.json (runtime-spec) before define; it must stay JSON."""

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
