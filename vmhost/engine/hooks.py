"""Lifecycle hooks: code of plugins that runs at named points of an operation.

A pre-hook (before-create, start-paused, before-stop, before-delete) may refuse: its error aborts the operation,
which is rolled back like any other failure. A post-hook runs once the operation is done; its error cannot undo
it, so it is reported after the fact as a PostHookFailed naming the plugin, never swallowed.
"""

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from vmhost.drivers.base import Driver
from vmhost.errors import VmhostError
from vmhost.spec import VMSpec


class Phase(StrEnum):
    BEFORE_CREATE = "before-create"
    AFTER_CREATE = "after-create"
    START_PAUSED = "start-paused"
    """The paused window of the two-phase start: the domain exists, the guest has not run yet."""
    AFTER_START = "after-start"
    BEFORE_STOP = "before-stop"
    AFTER_STOP = "after-stop"
    BEFORE_DELETE = "before-delete"
    AFTER_DELETE = "after-delete"


PRE_PHASES = frozenset({Phase.BEFORE_CREATE, Phase.START_PAUSED, Phase.BEFORE_STOP, Phase.BEFORE_DELETE})


@dataclass(frozen=True)
class HookContext:
    phase: Phase
    spec: VMSpec
    driver: Driver
    """The VM's own driver (libvirt, runc, ...)."""
    vm_dir: Path
    """Where vmhost keeps the VM's files; a plugin may keep its own records here (deleted with the VM)."""
    note: Callable[[str], None]
    """Publish a line on the VM's event stream (`vmhost events`, GET /v1/events), in order with its states."""


@dataclass(frozen=True)
class Hook:
    owner: str
    """The plugin's name: every error a hook causes names it."""
    phase: Phase
    call: Callable[[HookContext], None]


class HookFailed(VmhostError):
    """A pre-hook refused: the operation did not happen (what it had done was rolled back)."""

    code = "hook_failed"


class PostHookFailed(VmhostError):
    """The operation succeeded, then a post-hook failed."""

    code = "post_hook_failed"


def failure_text(hook: Hook, exc: Exception) -> str:
    if isinstance(exc, VmhostError):
        what = f"{exc.message} ({exc.detail})" if exc.detail else exc.message
    else:
        what = f"{type(exc).__name__}: {exc}"
    return f"plugin {hook.owner} failed in {hook.phase.value}: {what}"
