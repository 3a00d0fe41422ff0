"""The host's shutdown (`vmhost host shutdown`, `POST /v1/host/shutdown`, or SIGTERM with shutdown_on_sigterm):
every live VM is stopped with the graceful deadline, group by group in the reverse of `startup.order`
(unordered first, then the highest order), all VMs of a group at once.

Each VM goes through the ordinary stop (hooks, journal, ACPI, forced at the deadline). Its UUID is then written
to data_dir/host-shutdown.json, which the next agent start reads (and removes) to restore it with the VMs that
should run: a host shutdown is not an operator's stop. A file rather than the VM's desired state, because the
stop's own late hypervisor event would write that back to `stopped`.
"""

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from vmhost.engine.core import Core
from vmhost.engine.operations.stop import stop
from vmhost.engine.restore import Restore, host_event, label, plan
from vmhost.engine.states import VmState
from vmhost.engine.supervisor import Supervisor
from vmhost.errors import VmhostError
from vmhost.host.files import atomic_write

log = logging.getLogger("vmhost.engine")
LIVE = {VmState.RUNNING, VmState.PAUSED, VmState.STARTING, VmState.STOPPING}
SHUTDOWN_LIST = "host-shutdown.json"
STOPPERS = 64
"""Most stops at once (each a thread with its own libvirt connection, mostly waiting for its guest): a group
larger than this stops 64 at a time."""


def shutdown(core: Core, supervisor: Supervisor, restore: Restore, timeout: float | None = None) -> dict[str, Any]:
    """Stop every live VM; returns what happened to each, by group, and how long it took. A VM that fails to stop
    is reported and never keeps the others (or the next groups) from stopping."""
    restore.cancel()  # nothing may start behind the shutdown's back
    deadline = core.config.stop_timeout if timeout is None else timeout
    began = time.monotonic()
    live = [record for record, state in supervisor.reconcile() if state in LIVE]
    groups = list(reversed(plan(core, live)))
    host_event(core, "host-shutdown-started", f"{len(live)} VMs in {len(groups)} groups, {deadline:g} s each")
    report: list[dict[str, Any]] = []
    for group in groups:
        names = [member.name for member in group.members]
        core.progress(f"host shutdown: stopping group {label(group.order)} ({len(names)} VMs)")
        with ThreadPoolExecutor(max_workers=min(len(names), STOPPERS), thread_name_prefix="host-shutdown") as pool:
            outcomes = dict(zip(names, pool.map(lambda name: _stop_one(core, name, deadline), names), strict=True))
        report.append({"order": group.order, "vms": outcomes})
        done = [m.uuid for m in group.members if not outcomes[m.name].startswith("failed")]
        _remember(core, done)  # after each group: an agent killed halfway still restores what it stopped
    seconds = round(time.monotonic() - began, 3)
    failed = [name for group in report for name, outcome in group["vms"].items() if outcome.startswith("failed")]
    host_event(core, "host-shutdown-done", f"{len(live) - len(failed)} of {len(live)} stopped in {seconds:g} s")
    log.info("host shutdown done", extra={"vms": len(live), "failed": len(failed), "seconds": seconds})
    return {"stopped": len(live) - len(failed), "failed": failed, "groups": report, "seconds": seconds}


def _stop_one(core: Core, name: str, deadline: float) -> str:
    """How the VM went off (acpi, forced, killed-process, already-stopped), or `failed: why`."""
    try:
        method = stop(core, name, timeout=deadline).method
    except Exception as exc:
        message = exc.message if isinstance(exc, VmhostError) else f"{type(exc).__name__}: {exc}"
        log.warning("could not stop at host shutdown", extra={"vm": name, "error": message})
        return f"failed: {message}"
    return method


def _remember(core: Core, uuids: list[str]) -> None:
    path = core.config.data_dir / SHUTDOWN_LIST
    atomic_write(path, json.dumps({"vms": sorted(set(stopped_for_host(core)) | set(uuids))}))


def stopped_for_host(core: Core) -> list[str]:
    """UUIDs of the VMs the last host shutdown stopped (none without the file, or with a damaged one)."""
    try:
        return [str(uuid) for uuid in json.loads((core.config.data_dir / SHUTDOWN_LIST).read_text())["vms"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def forget_stopped_for_host(core: Core) -> None:
    """Once the restore has taken them in."""
    (core.config.data_dir / SHUTDOWN_LIST).unlink(missing_ok=True)
