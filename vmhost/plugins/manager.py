"""Find, check, order and enable plugins; hand each layer the hooks it runs.

A plugin that cannot be loaded (import error, incompatible API version, bad settings, a name clash) is
refused with a reason that `vmhost plugins` shows; the agent starts without it.
"""

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from vmhost.config import HostConfig
from vmhost.engine.hooks import Hook, HookContext
from vmhost.plugins.api import API_VERSION, ENTRY_POINT_GROUP, LIFECYCLE_METHODS, Listener, VmhostPlugin, overridden
from vmhost.render.libvirt import RenderHook
from vmhost.spec import extensions

if TYPE_CHECKING:
    import typer
    from fastapi import APIRouter

    from vmhost.api.agent import Agent

log = logging.getLogger("vmhost.plugins")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
EXT_PREFIX = "/ext"


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
    methods = ["render", *LIFECYCLE_METHODS.values(), "router", "dialect_router", "listeners", "cli"]
    return kinds + [method for method in methods if overridden(plugin, method)]


class Plugins:
    def __init__(self, enabled: Sequence[VmhostPlugin], statuses: Sequence[PluginStatus]):
        self.enabled = sorted(enabled, key=lambda p: (p.priority, p.name))
        self.statuses = sorted(statuses, key=lambda s: (s.priority, s.name))

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
        return cls(enabled, statuses)

    def register_spec_extensions(self) -> None:
        """Make the enabled plugins' spec blocks known to the spec (and only theirs)."""
        for name in extensions.registered():
            extensions.unregister(name)
        for plugin in self.enabled:
            if plugin.spec_model is not None:
                extensions.register(plugin.name, plugin.spec_model)

    def render_hooks(self) -> tuple[RenderHook, ...]:
        return tuple(RenderHook(p.name, p.render) for p in self.enabled if overridden(p, "render"))

    def lifecycle_hooks(self) -> list[Hook]:
        return [
            Hook(plugin.name, phase, partial(_call_hook, plugin, method))
            for phase, method in LIFECYCLE_METHODS.items()
            for plugin in self.enabled
            if overridden(plugin, method)
        ]

    def routers(self, agent: "Agent", reserved: Sequence[str]) -> "list[tuple[str, APIRouter]]":
        """(prefix, router) to mount: each plugin's /ext/<name> routes, then dialect routes at the root.

        A dialect route on a path already served refuses its plugin (the agent starts without it).
        """
        mounts: list[tuple[str, APIRouter]] = []
        taken = set(reserved)
        for plugin in self.enabled:
            router = plugin.router(agent)
            if router is not None:
                mounts.append((f"{EXT_PREFIX}/{plugin.name}", router))
            dialect = plugin.dialect_router(agent)
            if dialect is None:
                continue
            paths = {getattr(route, "path", "") for route in dialect.routes}
            clash = sorted(paths & taken)
            if clash:
                self._refuse(plugin, f"its dialect routes {', '.join(clash)} are already served")
                continue
            taken |= paths
            mounts.append(("", dialect))
        return mounts

    def listeners(self, agent: "Agent") -> list[tuple[str, Listener]]:
        return [(plugin.name, listener) for plugin in self.enabled for listener in plugin.listeners(agent)]

    def cli_groups(self) -> "list[tuple[str, typer.Typer]]":
        groups = [(plugin.name, plugin.cli()) for plugin in self.enabled]
        return [(name, group) for name, group in groups if group is not None]

    def _refuse(self, plugin: VmhostPlugin, reason: str) -> None:
        log.error("plugin refused", extra={"plugin": plugin.name, "reason": reason})
        self.enabled.remove(plugin)
        for status in self.statuses:
            if status.name == plugin.name:
                status.state, status.reason = "refused", reason


def _call_hook(plugin: VmhostPlugin, method: str, ctx: HookContext) -> None:
    getattr(plugin, method)(ctx)


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
    try:
        plugin.configure(settings)
    except Exception as exc:
        status.state, status.reason = "refused", f"its settings were refused: {exc}"
        return None
    return plugin


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
