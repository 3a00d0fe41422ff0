"""ZStack's asynchronous call protocol, on top of vmhost's operations.

The management node sends `taskuuid` and `callbackurl` headers, expects an immediate empty answer, and later
receives the reply JSON as a POST to the callback URL carrying the same `taskuuid` header. A task whose uuid
is still in flight is ignored, as ZStack's agent ignores it. The work runs through Operations.submit so
per-VM exclusivity, parallelism and metrics are the same as for the native API; the callback is sent only
after the operation has released its VM, so the management node's next command on that VM is never refused
as "busy" by the very operation it just heard back from.

The work is bounded: at most `limit` tasks are in flight (planned, running or sending their reply); the next
one is answered 503. No thread waits for an operation: the reply is queued on a small pool when it finishes.
Callback URLs must point into the callback networks (400 otherwise), so the dialect cannot be used to make
the host send requests elsewhere.
"""

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException
from starlette.requests import Request

from vmhost.api.errors import error_body, status_of
from vmhost.api.operations import BoundedPool, CallbackTargets, Operation, Operations, deliver_callback
from vmhost.errors import Unavailable, VmhostError

log = logging.getLogger("vmhost.zstack")

TASK_HEADER = "taskuuid"
CALLBACK_HEADER = "callbackurl"
REPLY_WORKERS = 4

Reply = dict[str, Any]
Deliver = Callable[[str, Any, dict[str, str]], bool]


@dataclass(frozen=True)
class Task:
    uuid: str
    callback_url: str


@dataclass(frozen=True)
class Job:
    """What one command does: `work` returns the path-specific reply fields; `vm` is the per-VM lock key."""

    kind: str
    vm: str | None
    vm_uuid: str | None
    work: Callable[[], Reply]


def task_of(request: Request, targets: CallbackTargets) -> Task:
    """ZStack's agent answers 400 to an async call without taskuuid; without a callback URL it cannot reply, and
    one outside the callback networks is refused before anything runs."""
    task_uuid = request.headers.get(TASK_HEADER, "").strip()
    if not task_uuid:
        raise HTTPException(status_code=400, detail=f"{TASK_HEADER} missing in request header")
    callback_url = request.headers.get(CALLBACK_HEADER, "").strip()
    if not callback_url.startswith(("http://", "https://")):
        raise HTTPException(status_code=400, detail=f"{CALLBACK_HEADER} header must be an http(s) URL")
    try:
        targets.check(callback_url, f"{CALLBACK_HEADER} header")
    except VmhostError as exc:
        raise HTTPException(status_code=400, detail=exc.message) from None
    return Task(task_uuid, callback_url)


def success(fields: Reply | None = None) -> Reply:
    return {"success": True, "error": "", **(fields or {})}


def failure(error: dict[str, Any]) -> Reply:
    """ZStack shows `error` to operators verbatim, so it carries vmhost's whole message and its details."""
    message = str(error.get("message", "error"))
    details = error.get("details")
    if isinstance(details, list) and details:
        message += ": " + "; ".join(f"{d['path']}: {d['message']}" if d.get("path") else d["message"] for d in details)
    elif isinstance(details, str) and details:
        message += f": {details}"
    return {"success": False, "error": message}


def reply_of(operation: Operation) -> Reply:
    if operation.error is not None:
        return failure(operation.error)
    return success(operation.result)


class AsyncTasks:
    """Runs ZStack tasks as vmhost operations and posts each reply to the task's callback URL."""

    def __init__(
        self, operations: Operations, targets: CallbackTargets, limit: int = 64, deliver: Deliver = deliver_callback
    ):
        self._operations = operations
        self.targets = targets
        self._limit = limit
        self._deliver = deliver
        # A slot frees just after its task left _in_flight: up to REPLY_WORKERS more slots cover that gap.
        self._replies = BoundedPool(REPLY_WORKERS, limit + REPLY_WORKERS, "zstack-reply")
        self._lock = threading.Lock()
        self._in_flight: set[str] = set()

    def run(self, task: Task, plan: Callable[[], Job]) -> None:
        """Plan and submit now (a refusal becomes a failure reply); reply when the operation finishes.
        Unavailable (503) when `limit` tasks are in flight: nothing of this one runs."""
        with self._lock:
            if task.uuid in self._in_flight:
                log.info("ignored duplicated task", extra={"task": task.uuid})
                return
            if len(self._in_flight) >= self._limit:
                raise Unavailable(f"{self._limit} ZStack tasks are in flight (zstack_task_limit); retry later")
            self._in_flight.add(task.uuid)
        try:
            job = plan()
            operation = self._operations.submit(job.kind, job.vm, job.work, vm_uuid=job.vm_uuid)
        except Exception as exc:
            if status_of(exc) == 500:
                log.exception("zstack task crashed before it started", extra={"task": task.uuid})
            self._send(task, failure(error_body(exc)))
            return
        operation.when_done(lambda: self._send(task, reply_of(operation)))

    def _send(self, task: Task, reply: Reply) -> None:
        """Queue the reply; the pool has a slot for every task in flight, so only a shut-down pool refuses it."""
        if not self._replies.submit(self._answer, task, reply):
            log.warning("zstack reply dropped: the agent is shutting down", extra={"task": task.uuid})
            self._done(task)

    def _answer(self, task: Task, reply: Reply) -> None:
        try:
            self._deliver(task.callback_url, reply, {TASK_HEADER: task.uuid})
        finally:
            self._done(task)

    def _done(self, task: Task) -> None:
        with self._lock:
            self._in_flight.discard(task.uuid)
