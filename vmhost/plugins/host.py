"""Assemble an engine with the enabled plugins' spec blocks, render hooks and lifecycle hooks."""

from collections.abc import Callable

from vmhost.config import HostConfig
from vmhost.drivers.select import build_drivers
from vmhost.engine import Engine
from vmhost.engine.core import Progress
from vmhost.engine.peer import Peer
from vmhost.plugins.manager import Plugins


def _quiet(_message: str) -> None:
    """No progress output."""


def build_engine(
    config: HostConfig,
    plugins: Plugins,
    progress: Progress = _quiet,
    peers: Callable[[str], Peer] | None = None,
) -> Engine:
    """`peers`: the client of other agents (migration), which the interfaces provide."""
    plugins.register_spec_extensions()
    drivers = build_drivers(config, render_hooks=plugins.render_hooks())
    return Engine(config, drivers, hooks=plugins.lifecycle_hooks(), progress=progress, peers=peers)
