"""Long operations run in a thread pool; clients poll /v1/operations/{id}, wait, or get a callback."""

import asyncio
import contextlib
import contextvars
import ipaddress
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
from prometheus_client import Counter, Histogram

from vmhost.api.errors import error_body, status_of
from vmhost.config import HostConfig
from vmhost.engine import steps
from vmhost.errors import Conflict, NotFound, VmhostError
from vmhost.store.sqlite import OperationRecord

log = logging.getLogger("vmhost.operations")

OPERATIONS = Counter("vmhost_operations", "Agent operations finished", ["kind", "result"])
OPERATION_SECONDS = Histogram(
    "vmhost_operation_duration_seconds",
    "Agent operation latency",
    ["kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
)
CALLBACK_ATTEMPTS = 4
CALLBACK_QUEUE_LIMIT = 256
"""Callbacks waiting to be sent (or retried) at once; beyond it a callback is dropped and logged, the operation
stays pollable."""
LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")
_current: contextvars.ContextVar["Operation | None"] = contextvars.ContextVar("operation", default=None)


class OpState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    COMPLETED_BY_RECOVERY = steps.COMPLETED_BY_RECOVERY
    ROLLED_BACK_BY_RECOVERY = steps.ROLLED_BACK_BY_RECOVERY
    """The agent died inside it; at the next start, recovery finished or undid it (see `progress`)."""


class Journal(Protocol):
    """Where finished operations outlive the agent (the engine's store)."""

    def operations_of_request(self, request: str) -> list[OperationRecord]: ...

    def recent_requests(self, limit: int) -> list[str]: ...


@dataclass
class Operation:
    id: str
    kind: str
    vm: str | None
    vm_uuid: str | None = None
    callback_url: str | None = None
    state: OpState = OpState.PENDING
    progress: str = ""
    result: Any = None
    error: dict[str, Any] | None = None
    status: int = 200
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    done: threading.Event = field(default_factory=threading.Event, repr=False)
    _waiters: list[Callable[[], object]] = field(default_factory=list, repr=False)
    _waiters_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    async def finished(self, timeout: float) -> None:
        """Wait on the event loop itself: a thread per waiter would run out with many long stops in flight."""
        loop = asyncio.get_running_loop()
        signal = asyncio.Event()
        with self._waiters_lock:
            if not self.done.is_set():
                self._waiters.append(lambda: loop.call_soon_threadsafe(signal.set))
            else:
                signal.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(signal.wait(), timeout)

    def mark_done(self) -> None:
        with self._waiters_lock:
            self.done.set()
            waiters, self._waiters = self._waiters, []
        for wake in waiters:
            wake()

    def when_done(self, call: Callable[[], object]) -> None:
        """Call `call` once the operation has finished (at once if it has): no thread waits meanwhile."""
        with self._waiters_lock:
            if not self.done.is_set():
                self._waiters.append(call)
                return
        call()

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "vm": self.vm,
            "vm_uuid": self.vm_uuid,
            "state": self.state.value,
            "progress": self.progress,
            "result": self.result,
            "error": self.error,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


def report_progress(message: str) -> None:
    """The engine's progress sink: lands on whichever operation runs in this thread."""
    operation = _current.get()
    if operation is not None:
        operation.progress = message


class BoundedPool:
    """A thread pool that refuses work beyond `limit` jobs queued or running, instead of queueing without end."""

    def __init__(self, workers: int, limit: int, name: str):
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._slots = threading.BoundedSemaphore(limit)

    def submit(self, job: Callable[..., object], *args: Any) -> bool:
        """False (and nothing queued) when the pool is full or shut down."""
        if not self._slots.acquire(blocking=False):
            return False
        try:
            future = self._executor.submit(job, *args)
        except RuntimeError:
            self._slots.release()
            return False
        future.add_done_callback(lambda _future: self._slots.release())
        return True

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class CallbackTargets:
    """The networks callback URLs may point into: the agent POSTs wherever a caller says, so without this any
    token holder or trusted source could make the host send requests anywhere (blind SSRF)."""

    def __init__(self, networks: Sequence[str]):
        self.networks = tuple(ipaddress.ip_network(network, strict=False) for network in networks)

    @classmethod
    def of(cls, config: HostConfig) -> "CallbackTargets":
        """callback_networks, or by default loopback and the ZStack trusted sources (the management nodes)."""
        if config.callback_networks is not None:
            return cls(config.callback_networks)
        return cls((*LOOPBACK_NETWORKS, *config.zstack_trusted_sources))

    def check(self, url: str, field: str) -> None:
        """Refuse (400, naming `field`) a URL whose host is not an address inside the networks."""
        try:
            host = urlsplit(url).hostname
        except ValueError:
            host = None
        if not host:
            raise VmhostError(f"{field}: {url!r} is not a URL with a host")
        if not self._allows(_address(host, field)):
            allowed = ", ".join(str(network) for network in self.networks) or "none"
            raise VmhostError(
                f"{field}: {host} is outside the callback networks ({allowed}); set callback_networks to allow it"
            )

    def _allows(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address.version == network.version and address in network for network in self.networks)


def _address(host: str, field: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address literal; names are not resolved (no lookup leaves the host, and no rebinding between the check
    and the POST), except `localhost`."""
    if host == "localhost":
        return ipaddress.IPv4Address("127.0.0.1")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        raise VmhostError(f"{field}: the host must be an IP address (or localhost), not the name {host!r}") from None


class Operations:
    """At most one operation per VM at a time (a second gets 409); different VMs run in parallel, `workers` at
    once (the agent's `operation_workers`), the rest waiting in submission order."""

    def __init__(
        self,
        workers: int = 16,
        history: int = 1000,
        callback_limit: int = CALLBACK_QUEUE_LIMIT,
        journal: Journal | None = None,
    ):
        self._journal = journal
        self.workers = workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="op")
        self._callbacks = BoundedPool(4, callback_limit, "callback")
        self._lock = threading.Lock()
        self._all: OrderedDict[str, Operation] = OrderedDict()
        self._active: dict[str, Operation] = {}
        self._history = history

    def submit(
        self,
        kind: str,
        vm: str | None,
        work: Callable[[], Any],
        *,
        vm_uuid: str | None = None,
        callback_url: str | None = None,
    ) -> Operation:
        operation = Operation(id=str(uuid.uuid4()), kind=kind, vm=vm, vm_uuid=vm_uuid, callback_url=callback_url)
        with self._lock:
            if vm is not None:
                busy = self._active.get(vm)
                if busy is not None:
                    raise Conflict(f"operation {busy.id} ({busy.kind}) is still running on {vm}")
                self._active[vm] = operation
            self._all[operation.id] = operation
            self._evict()
        self._executor.submit(self._run, operation, work)
        return operation

    def _evict(self) -> None:
        """Forget the oldest finished operations beyond the history size; an unfinished one is always kept, so
        polling it never answers 404 (caller holds the lock)."""
        excess = len(self._all) - self._history
        if excess <= 0:
            return
        finished = [key for key, operation in self._all.items() if operation.done.is_set()]
        for key in finished[:excess]:
            del self._all[key]

    def get(self, operation_id: str) -> Operation:
        with self._lock:
            operation = self._all.get(operation_id)
        if operation is None:
            operation = self._journaled(operation_id)
        if operation is None:
            raise NotFound(f"no operation {operation_id}")
        return operation

    def recent(self, limit: int = 100) -> list[Operation]:
        """This agent's operations, then those an earlier agent journaled (newest first)."""
        with self._lock:
            kept = list(self._all.values())[-limit:][::-1]
        known = {operation.id for operation in kept}
        requests = self._journal.recent_requests(limit) if self._journal else []
        earlier = [self._journaled(request) for request in requests if request not in known]
        merged = kept + [operation for operation in earlier if operation is not None]
        return sorted(merged, key=lambda operation: operation.created_at, reverse=True)[:limit]

    def _journaled(self, operation_id: str) -> Operation | None:
        """An operation of an earlier agent, rebuilt from the engine's journal (its result is not kept)."""
        records = self._journal.operations_of_request(operation_id) if self._journal else []
        if not records:
            return None
        first, states = records[0], [record.state for record in records]
        operation = Operation(id=operation_id, kind=first.kind, vm=first.vm_name, vm_uuid=first.vm_uuid)
        operation.created_at = operation.started_at = first.started_at
        operation.finished_at = max((record.finished_at or 0.0) for record in records) or None
        operation.progress = "; ".join(filter(None, (record.result for record in records)))
        for state in (OpState.FAILED, OpState.RUNNING, OpState.ROLLED_BACK_BY_RECOVERY, OpState.COMPLETED_BY_RECOVERY):
            if state.value in states:
                operation.state = state
                break
        else:
            operation.state = OpState.SUCCEEDED
        errors = [record.error for record in records if record.error]
        if errors:
            operation.error = {"code": "error", "message": errors[0], "details": None}
        if operation.state != OpState.RUNNING:
            operation.mark_done()
        return operation

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._callbacks.shutdown()

    def _run(self, operation: Operation, work: Callable[[], Any]) -> None:
        _current.set(operation)
        steps.request.set(operation.id)
        operation.state, operation.started_at = OpState.RUNNING, time.time()
        try:
            operation.result = work()
            operation.state = OpState.SUCCEEDED
        except Exception as exc:
            operation.state, operation.error, operation.status = OpState.FAILED, error_body(exc), status_of(exc)
            if operation.status == 500:
                log.exception("operation %s crashed", operation.id)
        finally:
            operation.finished_at = time.time()
            self._finish(operation)
        if operation.callback_url:
            # Their own threads: dead receivers (45 s of retries each) must not starve the operation workers.
            headers = {"x-vmhost-operation": operation.id}
            if not self._callbacks.submit(deliver_callback, operation.callback_url, operation.view(), headers):
                log.warning("callback dropped: too many pending", extra={"operation": operation.id})

    def _finish(self, operation: Operation) -> None:
        with self._lock:
            if operation.vm is not None and self._active.get(operation.vm) is operation:
                del self._active[operation.vm]
        operation.mark_done()
        seconds = (operation.finished_at or 0) - (operation.started_at or 0)
        OPERATIONS.labels(operation.kind, operation.state.value).inc()
        OPERATION_SECONDS.labels(operation.kind).observe(seconds)
        log.info(
            "operation finished",
            extra={
                "operation": operation.id,
                "kind": operation.kind,
                "vm": operation.vm,
                "vm_uuid": operation.vm_uuid,
                "state": operation.state.value,
                "seconds": round(seconds, 3),
                "error": (operation.error or {}).get("message"),
            },
        )


def deliver_callback(url: str, body: Any, headers: dict[str, str]) -> bool:
    """POST the result, retrying with backoff (0.5, 1, 2 s); a receiver that never answers is logged, not fatal."""
    for attempt in range(CALLBACK_ATTEMPTS):
        try:
            response = httpx.post(url, json=body, headers=headers, timeout=10)
            if response.status_code < 300:
                return True
        except httpx.HTTPError:
            pass
        if attempt + 1 < CALLBACK_ATTEMPTS:
            time.sleep(0.5 * 2**attempt)
    log.warning("callback failed", extra={"url": url, "attempts": CALLBACK_ATTEMPTS})
    return False
