"""Read views of VMs, shared by every interface: the summary rows of `list` (fields, key=value filters,
sorting), a VM as `get` and `info` show it, and its console. Reads only: nothing here writes the store."""

import os
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from vmhost.drivers import processes
from vmhost.drivers.base import Capability, ConsoleStream, DomainInfo, DomainState
from vmhost.engine import logs, resources
from vmhost.engine.core import GONE, MISSING_DEFINITION, Core
from vmhost.engine.plan import pending
from vmhost.engine.states import OBSERVED, TRANSIENT, VmState
from vmhost.errors import Conflict, NotFound, VmhostError
from vmhost.spec import VMSpec
from vmhost.spec.units import format_size, parse_size
from vmhost.store.sqlite import VmRecord

FIELDS: dict[str, Callable[[VmRecord, VmState], Any]] = {
    "name": lambda r, s: r.name,
    "uuid": lambda r, s: r.uuid,
    "kind": lambda r, s: r.spec.get("kind", "vm"),
    "driver": lambda r, s: r.driver,
    "state": lambda r, s: s.value,
    "vcpus": lambda r, s: r.spec["cpu"]["vcpus"],
    "memory": lambda r, s: r.spec["memory"]["size"],
    "accel": lambda r, s: r.spec.get("accel") or "",
    "disks": lambda r, s: len(r.spec["disks"]),
    "nics": lambda r, s: len(r.spec["nics"]),
    "description": lambda r, s: r.spec.get("description", ""),
}
_SORT_KEYS: dict[str, Callable[[Any], Any]] = {"memory": parse_size}


def summary(record: VmRecord, state: VmState, default_accel: str = "") -> dict[str, Any]:
    """One `list` row; `default_accel` is the host's (config.accel), which libvirt VMs without their own run on."""
    row = {name: getter(record, state) for name, getter in FIELDS.items()}
    if not row["accel"] and record.driver == "libvirt":
        row["accel"] = default_accel
    return row


def _sort_value(field: str, row: dict[str, Any]) -> Any:
    convert = _SORT_KEYS.get(field)
    return convert(row[field]) if convert else row[field]


def select(rows: list[dict[str, Any]], filters: dict[str, str], sort: str | None = None) -> list[dict[str, Any]]:
    """Keep rows whose fields equal every filter value; sort by 'field[,field]' ('-field' descending)."""
    for key, value in filters.items():
        if key not in FIELDS:
            raise ValueError(f"cannot filter on {key!r}; fields: {', '.join(FIELDS)}")
        rows = [row for row in rows if str(row[key]) == value]
    for key in reversed(sort.split(",") if sort else ["name"]):
        field = key.lstrip("-")
        if field not in FIELDS:
            raise ValueError(f"cannot sort by {field!r}; fields: {', '.join(FIELDS)}")
        rows = sorted(rows, key=partial(_sort_value, field), reverse=key.startswith("-"))
    return rows


def record_view(core: Core, name: str) -> dict[str, Any]:
    """The VM as operators see it: its spec (secrets masked), state on top, runtime facts. Reads only: the
    state is what the hypervisor says now (its view wins), the store is left to the supervisor."""
    record = core.record(name)
    info = _info_or_none(core, record.name)
    state = _known_state(core, record, info)
    spec = core.spec_of(record)
    view = spec.model_dump(mode="json")
    running = state in (VmState.RUNNING, VmState.PAUSED) and info is not None
    view.update(  # keep in step with operations.update.VIEW_ONLY_KEYS
        state=state.value,
        state_reason=_reason(record, state),
        driver=record.driver,
        created_at=record.created_at,
        updated_at=record.updated_at,
        runtime={**_runtime(info), "accel": _accel(core, record, spec), "nics": nic_runtime(core, spec)}
        if running and info
        else None,
        restart_status=_restart_status(record),
        pending=pending(record.since_boot),
    )
    return view


def info_view(core: Core, name: str) -> dict[str, Any]:
    record = core.record(name)
    info = _info_or_none(core, record.name)
    state = _known_state(core, record, info)
    running = state in (VmState.RUNNING, VmState.PAUSED) and info is not None
    spec = core.spec_of(record)
    return {
        "name": record.name,
        "uuid": record.uuid,
        "state": state.value,
        "runtime": _runtime(info) if info else None,
        "nics": nic_runtime(core, spec) if running else [],
        "console_log": str(console_log_path(core, record.name)),
        "owned_paths": record.owned_paths,
        "operations": [
            {
                "kind": op.kind,
                "state": op.state,
                "started_at": op.started_at,
                "finished_at": op.finished_at,
                "error": op.error,
            }
            for op in core.store.operations(vm_uuid=record.uuid, limit=10)
        ],
    }


def _known_state(core: Core, record: VmRecord, info: DomainInfo | None) -> VmState:
    """An operation in flight owns its transitional state; otherwise the hypervisor's word."""
    if VmState(record.state) in TRANSIENT and core.locks.is_held(record.name):
        return VmState(record.state)
    return OBSERVED[info.state if info else DomainState.ABSENT]


def _reason(record: VmRecord, state: VmState) -> str:
    if state.value == record.state:
        return record.reason
    return MISSING_DEFINITION if state == VmState.FAILED else ""


def _info_or_none(core: Core, name: str) -> DomainInfo | None:
    try:
        return core.driver.info(name)
    except NotFound:
        return None


def console_log_path(core: Core, name: str) -> Path:
    return resources.console_log(core.spec_of(core.record(name)), core.config.data_dir)


def follow_console_log(core: Core, name: str) -> Iterator[bytes]:
    """The console log (a container's output) as it grows, until the VM is gone."""
    record = core.record(name)
    return logs.follow(console_log_path(core, name), lambda: core.driver.state(record.name) not in GONE)


def open_console(core: Core, name: str) -> ConsoleStream:
    record = core.record(name)
    core.driver.require(record.name, Capability.CONSOLE)
    if core.driver.state(record.name) in GONE:
        raise Conflict(f"{record.name} is not running")
    return core.driver.open_console(record.name)


def _restart_status(record: VmRecord) -> dict[str, Any]:
    return {
        "desired_state": record.desired_state,
        "restart_count": record.restart_count,
        "last_exit_reason": record.last_exit_reason,
        "next_retry_at": record.next_retry_at,
    }


def _runtime(info: DomainInfo) -> dict[str, Any]:
    return {
        "vcpus": info.vcpus,
        "memory": format_size(info.memory_bytes),
        "cpu_time_seconds": round(info.cpu_time_ns / 1e9, 3),
        "pid": info.pid,
        "uptime_seconds": _uptime(info.pid),
    }


def _accel(core: Core, record: VmRecord, spec: VMSpec) -> str | None:
    """What runs the VM: its own accel, else the host's default (libvirt); None where the word means nothing."""
    return spec.accel or (core.config.accel if record.driver == "libvirt" else None)


def nic_runtime(core: Core, spec: VMSpec) -> list[dict[str, Any]]:
    """Each NIC of a created VM with its host device (tap) and the guest's addresses where they can be known, as
    `virsh domifaddr` shows them; a hypervisor that cannot say leaves them empty rather than failing the view."""
    try:
        devices = core.driver.interfaces(spec.name)
        addresses = core.driver.guest_addresses(spec.name)
    except VmhostError:
        devices, addresses = [], {}
    rows = []
    for index, nic in enumerate(spec.nics):
        known = addresses.get(nic.mac)
        rows.append(
            {
                "mac": nic.mac,
                "device": devices[index] if index < len(devices) else None,
                "addresses": list(known.addresses) if known else [],
                "address_source": known.source if known else None,
            }
        )
    return rows


def _uptime(pid: int | None) -> float | None:
    """Seconds since the VM's QEMU process started (from /proc; the agent runs on the host)."""
    fields = processes.stat_fields(pid) if pid is not None else None
    if fields is None:
        return None
    try:
        started = processes.start_ticks(fields) / os.sysconf("SC_CLK_TCK")
        return round(float(Path("/proc/uptime").read_text().split()[0]) - started, 1)
    except (OSError, IndexError, ValueError):
        return None
