"""Find, check, order and enable plugins; hand each layer the hooks it runs.

A plugin that cannot be loaded (import error, incompatible API version, bad settings, a name clash), whose
`cli()`, `router()`, `dialect_router()` or `listeners()` raises, or whose dialect routes clash is refused with
a reason (`vmhost plugins` shows it, the agent logs it); the agent starts without it. A refused plugin
contributes nothing: hooks handed out before the refusal (the engine is built before the routes) check at
each call that their plugin is still enabled, and its spec block is unregistered.
"""

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, TypeVar

from vmhost.config import HostConfig
from vmhost.drivers.select import RenderHooks
from vmhost.engine.hooks import Hook, HookContext
from vmhost.plugins.api import API_VERSION, ENTRY_POINT_GROUP, LIFECYCLE_METHODS, Listener, VmhostPlugin, overridden
from vmhost.render.hooks import DocumentHook
from vmhost.render.libvirt import RenderHook
from vmhost.spec import VMSpec, extensions

if TYPE_CHECKING:
    import typer
    from fastapi import APIRouter

    from vmhost.api.agent import Agent

log = logging.getLogger("vmhost.plugins")
T = TypeVar("T")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
EXT_PREFIX = "/ext"
VM_RENDER_HOOK = {"libvirt": "render", "xen": "render_xl", "smartos": "render_vmadm"}
"""The VmhostPlugin method that changes what each VM driver renders (render_oci: containers, on every host)."""


@dataclass
class PluginStatus:
    name: str
    version: str = ""
    api_version: str = ""
    priority: int = 0
    source: str = ""
    state: str = "enabled"
    """enabled, disabled (by the config file) or refused (see reason)."""
    reason: str = ""
    hooks: list[str] = field(default_factory=list)


def compatible(api_version: str) -> str | None:
    """None if a plugin built for `api_version` can run here, else why not."""
    try:
        major, minor = (int(part) for part in api_version.split("."))
    except ValueError:
        return f"its api_version {api_version!r} is not of the form MAJOR.MINOR"
    ours_major, ours_minor = (int(part) for part in API_VERSION.split("."))
    if major != ours_major or minor > ours_minor:
        return f"it was built for plugin API {api_version}; this vmhost provides {API_VERSION}"
    return None


def hook_kinds(plugin: VmhostPlugin) -> list[str]:
    kinds = ["spec"] if plugin.spec_model is not None else []
    methods = [*VM_RENDER_HOOK.values(), "render_oci", *LIFECYCLE_METHODS.values()]
    methods += ["router", "dialect_router", "listeners", "cli"]
    return kinds + [method for method in methods if overridden(plugin, method)]


class Plugins:
    def __init__(self, enabled: Sequence[VmhostPlugin], statuses: Sequence[PluginStatus]):
        self.enabled = sorted(enabled, key=lambda p: (p.priority, p.name))
        self.statuses = sorted(statuses, key=lambda s: (s.priority, s.name))
        self._cli_groups: list[tuple[str, typer.Typer]] | None = None
        self._listeners: list[tuple[str, Listener]] | None = None

    @classmethod
    def discover(cls, config: HostConfig) -> "Plugins":
        """The plugins installed in this Python environment (entry point group vmhost.plugins)."""
        candidates = [_load(entry) for entry in entry_points(group=ENTRY_POINT_GROUP)]
        return cls.check(candidates, config)

    @classmethod
    def check(cls, candidates: Sequence[tuple[str, str, Any]], config: HostConfig) -> "Plugins":
        """(name, source, loaded object or the error loading it) → enabled plugins and every status."""
        enabled: list[VmhostPlugin] = []
        statuses: list[PluginStatus] = []
        for name, source, loaded in candidates:
            status = PluginStatus(name=name, source=source)
            statuses.append(status)
            plugin = _accept(status, loaded, config, {p.name for p in enabled})
            if plugin is not None:
                enabled.append(plugin)
            elif status.state == "refused":
                log.error("plugin refused", extra={"plugin": name, "reason": status.reason})
        plugins = cls(enabled, statuses)
        plugins.cli_groups()  # asked here, in every process, so a cli() that raises refuses its plugin everywhere
        return plugins

    def register_spec_extensions(self) -> None:
        """Make the enabled plugins' spec blocks known to the spec (and only theirs)."""
        for name in extensions.registered():
            extensions.unregister(name)
        for plugin in self.enabled:
            if plugin.spec_model is not None:
                extensions.register(plugin.name, plugin.spec_model)

    def render_hooks(self) -> RenderHooks:
        """Each renderer's hooks in plugin order (a plugin refused after this is skipped at each call)."""
        return RenderHooks(
            libvirt=tuple(RenderHook(p.name, partial(self._render, p, "render")) for p in self._having("render")),
            xl=tuple(DocumentHook(p.name, partial(self._render, p, "render_xl")) for p in self._having("render_xl")),
            vmadm=tuple(
                DocumentHook(p.name, partial(self._render, p, "render_vmadm")) for p in self._having("render_vmadm")
            ),
            oci=tuple(DocumentHook(p.name, partial(self._render, p, "render_oci")) for p in self._having("render_oci")),
        )

    def _having(self, method: str) -> list[VmhostPlugin]:
        return [plugin for plugin in self.enabled if overridden(plugin, method)]

    def lifecycle_hooks(self) -> list[Hook]:
        return [
            Hook(plugin.name, phase, partial(self._call_hook, plugin, method))
            for phase, method in LIFECYCLE_METHODS.items()
            for plugin in self.enabled
            if overridden(plugin, method)
        ]

    def routers(self, agent: "Agent", reserved: Sequence[str]) -> "list[tuple[str, APIRouter]]":
        """(prefix, router) to mount: each plugin's /ext/<name> routes, then dialect routes at the root.

        Each plugin's router(), dialect_router() and listeners() are all asked first; one that raises, or a
        dialect route on a path already served, refuses the plugin, which then mounts nothing at all.
        """
        mounts: list[tuple[str, APIRouter]] = []
        listeners: list[tuple[str, Listener]] = []
        taken = set(reserved)
        for plugin in list(self.enabled):
            asked = self._ask(plugin, partial(_interfaces, plugin, agent))
            if asked is None:
                continue
            router, dialect, own = asked
            paths = {getattr(route, "path", "") for route in dialect.routes} if dialect is not None else set()
            clash = sorted(paths & taken)
            if clash:
                self._refuse(plugin, f"its dialect routes {', '.join(clash)} are already served")
                continue
            taken |= paths
            mounts += [(f"{EXT_PREFIX}/{plugin.name}", router)] if router is not None else []
            mounts += [("", dialect)] if dialect is not None else []
            listeners += [(plugin.name, listener) for listener in own]
        self._listeners = listeners
        return mounts

    def listeners(self, agent: "Agent") -> list[tuple[str, Listener]]:
        """The listeners of the plugins `routers` kept (asked now, with the same refusal, if it did not run)."""
        if self._listeners is None:
            own = [(p, self._ask(p, partial(p.listeners, agent))) for p in list(self.enabled)]
            self._listeners = [(p.name, listener) for p, listeners in own for listener in listeners or []]
        return [(name, listener) for name, listener in self._listeners if self._is_enabled(name)]

    def cli_groups(self) -> "list[tuple[str, typer.Typer]]":
        """Each plugin's command group; a plugin whose cli() raises is refused (the other commands still work)."""
        if self._cli_groups is None:
            groups = [(plugin.name, self._ask(plugin, plugin.cli)) for plugin in list(self.enabled)]
            self._cli_groups = [(name, group) for name, group in groups if group is not None]
        return [(name, group) for name, group in self._cli_groups if self._is_enabled(name)]

    def _ask(self, plugin: VmhostPlugin, call: Callable[[], T]) -> T | None:
        """call(), or None with the plugin refused when it raises."""
        try:
            return call()
        except Exception as exc:
            self._refuse(plugin, f"it failed while being set up: {type(exc).__name__}: {exc}")
            return None

    def _refuse(self, plugin: VmhostPlugin, reason: str) -> None:
        log.error("plugin refused", extra={"plugin": plugin.name, "reason": reason})
        self.enabled.remove(plugin)
        if plugin.spec_model is not None:
            extensions.unregister(plugin.name)
        for status in self.statuses:
            if status.name == plugin.name:
                status.state, status.reason = "refused", reason

    def _is_enabled(self, name: str) -> bool:
        return any(plugin.name == name for plugin in self.enabled)

    def _call_hook(self, plugin: VmhostPlugin, method: str, ctx: HookContext) -> None:
        """A plugin refused after the engine got its hooks is skipped: refused means it contributes nothing."""
        if plugin in self.enabled:
            getattr(plugin, method)(ctx)

    def _render(self, plugin: VmhostPlugin, method: str, spec: VMSpec, document: Any) -> None:
        if plugin in self.enabled:
            getattr(plugin, method)(spec, document)


def _interfaces(plugin: VmhostPlugin, agent: "Agent") -> "tuple[APIRouter | None, APIRouter | None, list[Listener]]":
    return plugin.router(agent), plugin.dialect_router(agent), plugin.listeners(agent)


def _load(entry: EntryPoint) -> tuple[str, str, Any]:
    source = f"{entry.dist.name} {entry.dist.version}" if entry.dist else entry.value
    try:
        return entry.name, source, entry.load()
    except Exception as exc:
        return entry.name, source, exc


def _accept(status: PluginStatus, loaded: Any, config: HostConfig, taken: set[str]) -> VmhostPlugin | None:
    """The plugin, configured, if it may run; else None with the status saying why."""
    try:
        plugin = _instance(loaded)
    except Exception as exc:
        status.state, status.reason = "refused", f"it cannot be loaded: {type(exc).__name__}: {exc}"
        return None
    status.version, status.api_version, status.priority = plugin.version, plugin.api_version, plugin.priority
    status.hooks = hook_kinds(plugin)
    settings = dict(config.plugins.get(plugin.name, {}))
    problem = _problem(plugin, status.name, taken)
    if problem:
        status.state, status.reason = "refused", problem
        return None
    if settings.pop("enabled", True) is False:
        status.state, status.reason = "disabled", "disabled in the config file"
        return None
    problem = _render_problem(plugin, config.vm_driver)
    if problem:
        status.state, status.reason = "refused", problem
        return None
    try:
        plugin.configure(settings)
    except Exception as exc:
        status.state, status.reason = "refused", f"its settings were refused: {exc}"
        return None
    return plugin


def _render_problem(plugin: VmhostPlugin, vm_driver: str) -> str | None:
    """A plugin that changes what VM drivers render, but not what this host's renders, would do nothing to any VM
    here without a word: it is refused, naming the hook it lacks."""
    hooks = [method for method in VM_RENDER_HOOK.values() if overridden(plugin, method)]
    needed = VM_RENDER_HOOK[vm_driver]
    if not hooks or needed in hooks:
        return None
    named = ", ".join(hooks)
    return f"its render hook ({named}) cannot apply here: this host's {vm_driver} driver renders through {needed}"


def _instance(loaded: Any) -> VmhostPlugin:
    if isinstance(loaded, Exception):
        raise loaded
    plugin = loaded() if isinstance(loaded, type) else loaded
    if not isinstance(plugin, VmhostPlugin):
        raise TypeError(f"{loaded!r} is not a vmhost.plugins.VmhostPlugin")
    return plugin


def _problem(plugin: VmhostPlugin, entry_name: str, taken: set[str]) -> str | None:
    if not isinstance(getattr(plugin, "name", None), str) or not NAME_PATTERN.match(plugin.name):
        return f"its name {getattr(plugin, 'name', None)!r} is not lower-case letters, digits and '-'"
    if plugin.name != entry_name:
        return f"its entry point is named {entry_name!r} but the plugin calls itself {plugin.name!r}"
    if plugin.name in taken:
        return f"another plugin named {plugin.name} is already loaded"
    return compatible(plugin.api_version)
