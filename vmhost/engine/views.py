"""Read views of VMs, shared by every interface: the summary rows of `list` (fields, key=value and label
filters, sorting, cursor pages, and the agent's Listing that answers them from memory per store generation), a VM
as `get` and `info` show it, and its console. Reads only: nothing here writes the store."""

import base64
import json
import os
import threading
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pydantic_core

from vmhost.drivers import processes
from vmhost.drivers.base import Capability, ConsoleStream, DomainInfo, DomainState
from vmhost.engine import logs, resources
from vmhost.engine.core import GONE, MISSING_DEFINITION, Core, moved_away
from vmhost.engine.plan import pending
from vmhost.engine.states import OBSERVED, VmState, keeps_recorded
from vmhost.errors import Conflict, NotFound, VmhostError
from vmhost.spec import VMSpec
from vmhost.spec.units import format_size, parse_size
from vmhost.store.sqlite import Store, VmRecord

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
    "labels": lambda r, s: dict(r.spec.get("labels", {})),
}
SORTABLE = [field for field in FIELDS if field != "labels"]
LABEL = "label."
"""A filter `label.KEY=VALUE` keeps the VMs whose label KEY is VALUE."""
_SORT_KEYS: dict[str, Callable[[Any], Any]] = {"memory": parse_size}
_NUMBERS = ("vcpus", "memory", "disks", "nics")
"""Fields whose sort values are integers (memory's in bytes): a cursor's values must be too."""
PAGES_KEPT = 32
"""Serialized listings kept per store generation (distinct queries: filters, order, fields, page)."""


def summary(record: VmRecord, state: VmState, default_accel: str = "") -> dict[str, Any]:
    """One `list` row; `default_accel` is the host's (config.accel), which libvirt VMs without their own run on."""
    row = {name: getter(record, state) for name, getter in FIELDS.items()}
    if not row["accel"] and record.driver == "libvirt":
        row["accel"] = default_accel
    return row


def _sort_value(field: str, row: dict[str, Any]) -> Any:
    convert = _SORT_KEYS.get(field)
    return convert(row[field]) if convert else row[field]


def check_query(filters: Iterable[str], sort: str | None, fields: Iterable[str] = ()) -> None:
    """ValueError naming the first unknown filter, sort or output field (the API answers 400, the CLI exits 2)."""
    for key in filters:
        if key not in SORTABLE and not (key.startswith(LABEL) and key != LABEL):
            raise ValueError(f"cannot filter on {key!r}; fields: {', '.join(SORTABLE)}, or {LABEL}KEY")
    for field, _descending in _order(sort):
        if field not in SORTABLE:
            raise ValueError(f"cannot sort by {field!r}; fields: {', '.join(SORTABLE)}")
    for field in fields:
        if field not in FIELDS:
            raise ValueError(f"unknown field {field!r}; fields: {', '.join(FIELDS)}")


def select(rows: list[dict[str, Any]], filters: dict[str, str], sort: str | None = None) -> list[dict[str, Any]]:
    """Keep rows whose fields equal every filter value (`label.KEY`: that label's); sort by 'field[,field]'
    ('-field' descending), names breaking ties."""
    check_query(filters, sort)
    return _ordered(_matching(rows, filters.items()), _order(sort))


def _order(sort: str | None) -> list[tuple[str, bool]]:
    """(field, descending) for each sort key, then the name: a total order, so a cursor has one place in it."""
    keys = [(key.lstrip("-"), key.startswith("-")) for key in sort.split(",")] if sort else []
    return keys if keys and keys[-1][0] == "name" else [*keys, ("name", False)]


def _sort_text(order: list[tuple[str, bool]]) -> str:
    """The order written back as a sort ("name" for the default): what a cursor says it belongs to."""
    return ",".join(f"-{field}" if descending else field for field, descending in order)


def _ordered(rows: list[dict[str, Any]], order: list[tuple[str, bool]]) -> list[dict[str, Any]]:
    for field, descending in reversed(order):
        rows = sorted(rows, key=partial(_sort_value, field), reverse=descending)
    return rows


def _matching(rows: list[dict[str, Any]], filters: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    for key, value in filters:
        if key.startswith(LABEL):
            label = key.removeprefix(LABEL)
            rows = [row for row in rows if row["labels"].get(label) == value]
        else:
            rows = [row for row in rows if str(row[key]) == value]
    return rows


@dataclass(frozen=True)
class ListQuery:
    """One listing request, hashable (the page cache's key): filters in a canonical order, the sort as given,
    the fields to answer (None: all), at most `limit` rows after the cursor `after` (from the previous page)."""

    filters: tuple[tuple[str, str], ...] = ()
    sort: str | None = None
    fields: tuple[str, ...] | None = None
    limit: int | None = None
    after: str | None = None

    @classmethod
    def of(
        cls,
        filters: Iterable[tuple[str, str]],
        sort: str | None = None,
        fields: str | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> "ListQuery":
        """Checked: ValueError names an unknown filter, sort or field."""
        chosen = tuple(fields.split(",")) if fields else None
        canonical = tuple(sorted(filters))
        check_query([key for key, _value in canonical], sort, chosen or ())
        return cls(canonical, sort or None, chosen, limit, after)


@dataclass(frozen=True)
class Page:
    body: bytes
    """The rows as a JSON array."""
    after: str | None
    """The cursor of the next page; None on the last."""


class Listing:
    """GET /v1/vms at 1000 VMs: orders and serialized pages are made once per store generation (any committed
    VM change, from this process or another) and answered from memory until it moves. Each row and its JSON are
    kept while the store keeps its record, so a state change costs one row, not a thousand."""

    def __init__(self, store: Store, default_accel: str = ""):
        self._store = store
        self._accel = default_accel
        self._lock = threading.Lock()
        self._generation: tuple[int, int] | None = None
        self._rows: dict[str, _Row] = {}
        self._orders: dict[str, list[dict[str, Any]]] = {}
        self._pages: OrderedDict[ListQuery, Page] = OrderedDict()

    def page(self, query: ListQuery) -> Page:
        """ValueError when `after` is not a cursor of this query's order."""
        with self._lock:
            generation = self._store.generation()
            if generation != self._generation:
                self._refresh(generation)
            page = self._pages.get(query)
            if page is None:
                page = self._pages[query] = self._make(query)
                if len(self._pages) > PAGES_KEPT:
                    self._pages.popitem(last=False)
            self._pages.move_to_end(query)
            return page

    def _refresh(self, generation: tuple[int, int]) -> None:
        kept, self._rows = self._rows, {}
        for record in self._store.list_vms():
            known = kept.get(record.name)
            self._rows[record.name] = known if known and known.record is record else self._row(record)
        self._generation, self._orders = generation, {"name": [row.fields for row in self._rows.values()]}
        self._pages.clear()

    def _row(self, record: VmRecord) -> "_Row":
        fields = summary(record, VmState(record.state), self._accel)
        return _Row(record, fields, pydantic_core.to_json(fields))

    def _make(self, query: ListQuery) -> Page:
        order = _order(query.sort)
        sort = _sort_text(order)
        if sort not in self._orders:
            self._orders[sort] = _ordered(self._orders["name"], order)
        rows = _matching(self._orders[sort], query.filters)
        if query.after is not None:
            rows = rows[bisect_right(rows, _cursor_position(query.after, sort, order), key=_positioner(order)) :]
        shown = rows[: query.limit] if query.limit is not None else rows
        after = _cursor(sort, order, shown[-1]) if len(shown) < len(rows) else None
        if query.fields is not None:
            return Page(pydantic_core.to_json([{field: row[field] for field in query.fields} for row in shown]), after)
        return Page(b"[" + b",".join(self._rows[row["name"]].json for row in shown) + b"]", after)


@dataclass(frozen=True)
class _Row:
    record: VmRecord
    """The store's record it was made of (the store keeps the object while the row is unchanged)."""
    fields: dict[str, Any]
    json: bytes


class _Position:
    """A row's place in an order: its sort values then its name, compared in each field's direction."""

    __slots__ = ("descending", "values")

    def __init__(self, values: list[Any], descending: list[bool]):
        self.values, self.descending = values, descending

    def __lt__(self, other: "_Position") -> bool:
        for mine, theirs, descending in zip(self.values, other.values, self.descending, strict=True):
            if mine != theirs:
                return bool(mine > theirs) if descending else bool(mine < theirs)
        return False


def _positioner(order: list[tuple[str, bool]]) -> Callable[[dict[str, Any]], _Position]:
    descending = [down for _field, down in order]
    return lambda row: _Position([_sort_value(field, row) for field, _down in order], descending)


def _cursor(sort: str, order: list[tuple[str, bool]], row: dict[str, Any]) -> str:
    """Opaque to clients: the order and the last row's place in it, so the next page starts right after that
    place even when VMs were added or deleted in between (no row is skipped or repeated)."""
    place = [sort, *(_sort_value(field, row) for field, _down in order)]
    return base64.urlsafe_b64encode(json.dumps(place).encode()).decode().rstrip("=")


def _cursor_position(after: str, sort: str, order: list[tuple[str, bool]]) -> _Position:
    """The place a cursor names; ValueError unless this order made it (a place in another order means nothing,
    so the sort must stay the first page's)."""
    try:
        place = json.loads(base64.urlsafe_b64decode(after + "=" * (-len(after) % 4)))
    except ValueError:
        place = None
    kinds = [int if field in _NUMBERS else str for field, _descending in order]
    if not (
        isinstance(place, list)
        and len(place) == len(order) + 1
        and place[0] == sort
        and all(type(value) is kind for value, kind in zip(place[1:], kinds, strict=True))
    ):
        raise ValueError(f"after: not a cursor of this listing with sort={sort}; pass the one its Link header gave")
    return _Position(place[1:], [descending for _field, descending in order])


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
    if keeps_recorded(VmState(record.state), core.locks.is_held(record.name), moved_away(record)):
        return VmState(record.state)
    return OBSERVED[info.state if info else DomainState.ABSENT]


def _reason(record: VmRecord, state: VmState) -> str:
    if state.value == record.state:
        return record.reason
    return MISSING_DEFINITION if state == VmState.FAILED else ""


def runtime_facts(core: Core, name: str) -> dict[str, Any]:
    """What the list leaves out because it costs the hypervisor a call or two per VM: a running VM's uptime and
    its guest's addresses (GET /v1/vms?runtime=true asks for them)."""
    record = core.record(name)
    info = _info_or_none(core, record.name)
    if info is None or info.pid is None:
        return {"uptime_seconds": None, "addresses": []}
    nics = nic_runtime(core, core.spec_of(record))
    return {"uptime_seconds": _uptime(info.pid), "addresses": [a for nic in nics for a in nic["addresses"]]}


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
