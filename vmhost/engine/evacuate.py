"""evacuate: live-migrate every running VM of this host away, several at a time, spread over the given agents."""

import itertools
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from vmhost.engine.core import Core
from vmhost.engine.operations import migrate
from vmhost.engine.peer import MigrationRequest
from vmhost.engine.states import VmState
from vmhost.errors import VmhostError


@dataclass(frozen=True)
class Evacuated:
    vm: str
    to: str
    ok: bool
    error: str = ""


def evacuate(
    core: Core, peer_urls: Sequence[str], request: MigrationRequest, concurrency: int | None = None
) -> list[Evacuated]:
    """Running and paused VMs go round-robin to `peer_urls`; one failure never stops the others."""
    if not peer_urls:
        raise VmhostError("evacuate needs at least one agent to migrate to")
    if request.offline:
        raise VmhostError("evacuate moves running VMs live; offline is not an option for it")
    live = [
        record.name for record in core.store.list_vms() if record.state in (VmState.RUNNING.value, VmState.PAUSED.value)
    ]
    targets = dict(zip(live, itertools.cycle(peer_urls), strict=False))
    lock = threading.Lock()
    results: list[Evacuated] = []

    def move(name: str) -> None:
        try:
            migrate.migrate(core, name, request, targets[name])
            outcome = Evacuated(vm=name, to=targets[name], ok=True)
        except VmhostError as exc:
            outcome = Evacuated(vm=name, to=targets[name], ok=False, error=exc.message)
        with lock:
            results.append(outcome)

    with ThreadPoolExecutor(max_workers=concurrency or core.config.migration_concurrency) as pool:
        list(pool.map(move, live))
    return sorted(results, key=lambda result: result.vm)
