"""Operations as declared steps, and the one runner that journals them.

Each step has a `do`; where it changes the host an `undo` (and where it matters a `redo`, to complete it after
a crash). The runner executes the steps under the VM's lock, journals each completed one in SQLite before the
next, and on failure undoes the completed steps, newest first. Recovery (engine/recovery.py) replays the very
same steps from the journal. So every undo and redo must be safe to run on a step that did not happen, or
happened only in part: the journal cannot tell a step that was about to run from one half done.
"""

import contextvars
import logging
from collections.abc import Callable, Iterable, Sequence, Set
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from vmhost.engine import faults
from vmhost.engine.core import Core
from vmhost.errors import VmhostError
from vmhost.store.sqlite import OperationRecord

PRUNE_EVERY = 100
"""Finished operations between two prunings of the history (also pruned at agent start)."""
COMPLETED_BY_RECOVERY = "completed by recovery"
ROLLED_BACK_BY_RECOVERY = "rolled back by recovery"

request: contextvars.ContextVar[str | None] = contextvars.ContextVar("request", default=None)
"""The id of the API operation this thread works for; journaled so that the id answers after a restart."""
log = logging.getLogger("vmhost.engine")
_finished = [0]


@dataclass(frozen=True)
class Step:
    name: str
    do: Callable[[], None]
    undo: Callable[[], None] | None = None
    """Take the step back (in-process after a later failure; by recovery for a rollback)."""
    redo: Callable[[], None] | None = None
    """Complete the step after a crash, from what the journal and the hypervisor say (default: nothing)."""
    when: Callable[[], bool] | None = None
    """Skip the step (and do not journal it) unless this holds when its turn comes."""


class Declared:
    """One operation on one VM. Subclasses set `kind`, declare `steps()`, and say when recovery completes.

    complete_after: recovery completes the operation once this step is journaled ("" for always), and rolls
    it back otherwise (None: always rolls back).
    """

    kind: ClassVar[str]
    complete_after: ClassVar[str | None] = None

    def __init__(self, core: Core, name: str, uuid: str):
        self.core = core
        self.name = name
        self.uuid = uuid

    def steps(self) -> Sequence[Step]:
        raise NotImplementedError

    def completes(self, journaled: Set[str]) -> bool:
        """Whether recovery completes this interrupted operation (else it rolls it back)."""
        return self.complete_after == "" or (self.complete_after is not None and self.complete_after in journaled)

    def journal_data(self) -> dict[str, Any]:
        """What recovery needs beyond the VM's record, journaled before the first step."""
        return {}

    @classmethod
    def restored(cls, core: Core, op: OperationRecord) -> Self | None:
        """The operation as recovery sees it: from the journal and the store (None: nothing is left of it)."""
        record = core.store.get_vm(op.vm_name)
        if record is None:
            return None
        return cls(core, record.name, record.uuid)

    def failed(self, error: Exception) -> None:
        """After the in-process undo: record what the failure means for the VM (default: nothing)."""

    def settle(self) -> None:
        """After recovery completed or rolled back the steps: make the store say what the hypervisor says."""
        record = self.core.store.get_vm(self.name)
        if record is not None and record.uuid == self.uuid:
            self.core.observe(record)


def run(op: Declared) -> None:
    """Execute `op`'s steps; the caller holds the VM's lock (and has checked everything it can beforehand)."""
    store = op.core.store
    op_id = store.begin_operation(op.name, op.uuid, op.kind, request=request.get())
    done: list[Step] = []
    try:
        _journal(op, op_id, "begin", op.journal_data())
        for step in op.steps():
            if step.when is not None and not step.when():
                continue
            step.do()
            done.append(step)
            _journal(op, op_id, step.name, {})
    except Exception as exc:
        notes = undo(reversed(done))
        if notes and isinstance(exc, VmhostError):
            exc.detail = "; ".join(filter(None, [exc.detail, *notes]))
        op.failed(exc)
        store.finish_operation(op_id, "failed", error=str(exc))
        raise
    finally:
        _count_finished(op.core)
    store.finish_operation(op_id, "succeeded")


def undo(steps: Iterable[Step]) -> list[str]:
    """Run each step's undo in the order given; a failing undo is noted and the rest still run."""
    notes = []
    for step in steps:
        if step.undo is None:
            continue
        try:
            step.undo()
        except Exception as exc:
            notes.append(f"could not undo {step.name}: {exc}")
    return notes


def _journal(op: Declared, op_id: int, step: str, data: dict[str, Any]) -> None:
    """Durable before the next step runs; then the fault point the recovery tests kill the agent at."""
    op.core.store.journal(op_id, step, **data)
    faults.point(f"{op.kind}:{step}")


def _count_finished(core: Core) -> None:
    _finished[0] += 1
    if _finished[0] % PRUNE_EVERY == 0:
        prune_history(core)


def prune_history(core: Core) -> None:
    """Keep the operation history (and its journal) bounded: config history_max_age_days/_operations."""
    core.store.prune_operations(core.config.history_max_age_days, core.config.history_max_operations)
