"""Long operations run in a thread pool; clients poll /v1/operations/{id}, wait, or get a callback."""

import asyncio
import contextlib
import contextvars
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx
from prometheus_client import Counter, Histogram

from vmhost.api.errors import error_body, status_of
from vmhost.errors import Conflict, NotFound

log = logging.getLogger("vmhost.operations")

OPERATIONS = Counter("vmhost_operations", "Agent operations finished", ["kind", "result"])
OPERATION_SECONDS = Histogram(
    "vmhost_operation_duration_seconds",
    "Agent operation latency",
    ["kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
)
CALLBACK_ATTEMPTS = 4
_current: contextvars.ContextVar["Operation | None"] = contextvars.ContextVar("operation", default=None)


class OpState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


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


class Operations:
    """At most one operation per VM at a time (a second gets 409); different VMs run in parallel."""

    def __init__(self, workers: int = 16, history: int = 1000):
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="op")
        self._callbacks = ThreadPoolExecutor(max_workers=4, thread_name_prefix="callback")
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
            while len(self._all) > self._history:
                self._all.popitem(last=False)
        self._executor.submit(self._run, operation, work)
        return operation

    def get(self, operation_id: str) -> Operation:
        with self._lock:
            operation = self._all.get(operation_id)
        if operation is None:
            raise NotFound(f"no operation {operation_id}")
        return operation

    def recent(self, limit: int = 100) -> list[Operation]:
        with self._lock:
            return list(self._all.values())[-limit:][::-1]

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._callbacks.shutdown(wait=False)

    def _run(self, operation: Operation, work: Callable[[], Any]) -> None:
        _current.set(operation)
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
            self._callbacks.submit(
                deliver_callback, operation.callback_url, operation.view(), {"x-vmhost-operation": operation.id}
            )

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
