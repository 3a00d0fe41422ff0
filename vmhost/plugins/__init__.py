"""Plugins: installed packages that extend vmhost without forking it (see README, "Writing a plugin")."""

from vmhost.engine.hooks import HookContext, Phase
from vmhost.plugins.api import API_VERSION, ENTRY_POINT_GROUP, Listener, VmhostPlugin
from vmhost.plugins.manager import Plugins, PluginStatus

__all__ = [
    "API_VERSION",
    "ENTRY_POINT_GROUP",
    "HookContext",
    "Listener",
    "Phase",
    "PluginStatus",
    "Plugins",
    "VmhostPlugin",
]
