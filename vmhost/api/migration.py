"""Migration routes: this agent as a migration's source (migrate one VM, evacuate the host) and as its
destination (the calls another agent's api/peer.py makes).

Source: `POST /v1/vms/{vm}/migrate` and `POST /v1/host/evacuate` are operations (202, ?wait=true blocks); the
operation's `progress` follows the engine's migration events (phase, percent, remaining, expected downtime).
The destination's URL and this host's token for it are checked before anything runs (400 naming the setting).

Destination: `POST /v1/migrations/incoming` (an offer, answered with a ticket), `PUT …/{id}/disks/{target}` (an
offline copy's disk contents, streamed into the placeholder), `POST …/{id}/finish`, `DELETE …/{id}` (abort,
idempotent), `GET …/{id}` (status). These need a token that may write, as every action does. A disk upload is
exempt from max_body_bytes (auth.py lets `streams_body` routes bound their own bodies) and bounded instead by the
size of the disk the source offered (Engine.incoming_upload_limit): 413 beyond it.
"""

import asyncio
import contextlib
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi import Path as PathParam
from pydantic import Field
from starlette.requests import ClientDisconnect
from starlette.types import Scope

from vmhost.api.agent import Agent
from vmhost.api.fleet import local_changes_guard
from vmhost.api.models import OperationView
from vmhost.api.operations import CallbackTargets, Operation
from vmhost.api.peer import evacuation_view, reachable
from vmhost.api.v1 import ERRORS, Callback, Wait
from vmhost.engine import Engine
from vmhost.engine.events import VmEvent
from vmhost.engine.peer import IncomingOffer, IncomingTicket, MigrationRequest
from vmhost.errors import Conflict, VmhostError

MIGRATION_ID = r"^[0-9a-f]{32}$"
"""As IncomingOffer.migration_id."""
TARGET = r"^(vd|sd|hd)[a-z]{1,2}$"
"""A disk's guest device name, as spec/disk.py Disk.target."""
UPLOAD_PATH = re.compile(r"^/v1/migrations/incoming/[^/]+/disks/[^/]+/?$")
BLOCK = 1 << 20
"""Bytes of one write into the placeholder, at offsets that are multiples of it (all-zero blocks become holes)."""

MIGRATION_EVENTS = ("migration", "migrated")
"""The engine's event types of a migration on its source (operations/migrate.py)."""

MigrationId = Annotated[str, PathParam(pattern=MIGRATION_ID, description="The migration (32 hex digits).")]
Target = Annotated[str, PathParam(pattern=TARGET, description="The disk's target (vda, sdb...).")]


class MigrateBody(MigrationRequest):
    """What `vmhost migrate` sends: the destination agent and the request's options."""

    to: str = Field(description="The destination agent's URL (https://HOST:PORT).")


class EvacuateBody(MigrationRequest):
    """What `vmhost evacuate` sends: destinations taken in turn, and how many migrations run at once."""

    to: list[str] = Field(min_length=1, description="Destination agents' URLs; VMs go to them round-robin.")
    concurrency: int | None = Field(None, gt=0, description="Migrations at once (default: migration_concurrency).")


def streams_body(scope: Scope) -> bool:
    """The disk upload, whose body auth.py's max_body_bytes must not cut off (the route bounds it itself)."""
    return scope["type"] == "http" and scope["method"] == "PUT" and bool(UPLOAD_PATH.match(scope["path"]))


def router(agent: Agent) -> APIRouter:
    api = APIRouter(
        prefix="/v1",
        dependencies=[Depends(agent.auth), local_changes_guard(agent)],
        tags=["migration"],
        responses=ERRORS,
    )
    _source_routes(api, agent)
    _destination_routes(api, agent)
    return api


def _source_routes(api: APIRouter, agent: Agent) -> None:
    engine, operations, config = agent.engine, agent.operations, agent.config
    targets = CallbackTargets.of(config)

    def checked(callback_url: str | None) -> str | None:
        if callback_url is not None:
            targets.check(callback_url, "callback_url")
        return callback_url

    @api.post("/vms/{vm}/migrate", status_code=202, response_model=OperationView)
    async def migrate_vm(vm: str, body: MigrateBody, wait: Wait = False, callback_url: Callback = None) -> Response:
        """Move the VM to another agent: live (running or paused), or `offline` (stopped: spec and disks). The
        operation's progress reads `phase memory 42% remaining 12 MiB downtime 30 ms`; its result names the VM
        and where it went."""
        checked(callback_url)
        record = await asyncio.to_thread(engine.record, vm)
        (to,) = await asyncio.to_thread(reachable, config, [body.to])
        request = MigrationRequest.model_validate(body.model_dump(exclude={"to"}))

        follow = EventProgress(engine, record.name)

        def work() -> dict[str, Any]:
            with follow:
                engine.migrate(record.name, to, request)
            return {"name": record.name, "to": to}

        operation = operations.submit("migrate", record.name, work, vm_uuid=record.uuid, callback_url=callback_url)
        follow.into(operation)
        return await agent.respond(operation, wait)

    @api.post("/host/evacuate", status_code=202, response_model=OperationView, tags=["host"])
    async def evacuate_host(body: EvacuateBody, wait: Wait = False, callback_url: Callback = None) -> Response:
        """Live-migrate every running VM of this host to the given agents, `concurrency` at once. The result
        lists each VM with where it went, `ok` and the `error` of those that stayed."""
        checked(callback_url)
        to = await asyncio.to_thread(reachable, config, body.to)
        request = MigrationRequest.model_validate(body.model_dump(exclude={"to", "concurrency"}))

        follow = EventProgress(engine, None)

        def work() -> dict[str, Any]:
            with follow:
                return evacuation_view(engine.evacuate(to, request, body.concurrency))

        operation = operations.submit("evacuate", None, work, callback_url=callback_url)
        follow.into(operation)
        return await agent.respond(operation, wait)


def _destination_routes(api: APIRouter, agent: Agent) -> None:
    engine = agent.engine
    uploads = Uploads()

    @api.post("/migrations/incoming", response_model=IncomingTicket)
    def accept_incoming(offer: IncomingOffer) -> IncomingTicket:
        """A source agent's offer: check the spec against this host, record the VM as incoming, make the
        placeholders of the disks it copies; the ticket says where to send the VM."""
        return engine.accept_incoming(offer)

    @api.put(
        "/migrations/incoming/{migration_id}/disks/{target}",
        responses={413: {"description": "the body is larger than the disk the source offered"}},
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/octet-stream": {"schema": {"type": "string"}}}}
        },
    )
    async def upload_disk(request: Request, migration_id: MigrationId, target: Target) -> dict[str, Any]:
        """An offline copy: the disk file's bytes, streamed into the placeholder the prepare made (from its
        start; an upload again replaces it), at most the offered disk's size with room for qcow2's metadata.
        The result must be an image of the offered format and size, with no backing file: otherwise, and after
        an upload that broke off, the placeholder is made empty again."""
        placeholder = await asyncio.to_thread(engine.incoming_disk, migration_id, target)
        limit = await asyncio.to_thread(engine.incoming_upload_limit, migration_id, target)
        declared = _content_length(request)
        if declared is not None and declared > limit:
            raise _too_large(target, limit)
        with uploads.one(migration_id, target):
            try:
                written = await receive_into(request, placeholder, limit, target)
            except BaseException:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(engine.check_incoming_upload, migration_id, target)
                raise
            await asyncio.to_thread(engine.check_incoming_upload, migration_id, target)
        return {"target": target, "bytes": written}

    @api.post("/migrations/incoming/{migration_id}/finish")
    def finish_incoming(migration_id: MigrationId) -> dict[str, str]:
        """Take the VM over (resume a live one, own it, emit its events); again after that: nothing to do."""
        engine.finish_incoming(migration_id)
        return {"status": engine.incoming_status(migration_id)}

    @api.delete("/migrations/incoming/{migration_id}")
    def abort_incoming(migration_id: MigrationId) -> dict[str, str]:
        """Drop everything this host made for the migration; a migration it does not know is already dropped."""
        engine.abort_incoming(migration_id)
        return {"status": engine.incoming_status(migration_id)}

    @api.get("/migrations/incoming/{migration_id}")
    def incoming_status(migration_id: MigrationId) -> dict[str, str]:
        """prepared, arrived (a live VM is here, paused), finished, or unknown (never prepared here, aborted,
        or rolled back)."""
        return {"status": engine.incoming_status(migration_id)}


class EventProgress:
    """The engine's migration events as the operation's `progress`: the watchdog that reports a migration's
    phase publishes from a thread of its own, where the engine's progress sink reaches no operation."""

    def __init__(self, engine: Engine, vm: str | None):
        self._engine, self._vm = engine, vm
        self._operation: Operation | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._last = ""

    def into(self, operation: Operation) -> None:
        """The work may have started (and reported) before submit returned the operation: the last line waits."""
        with self._lock:
            self._operation = operation
            if self._last:
                operation.progress = self._last

    def _offer(self, event: VmEvent) -> None:
        if event.type not in MIGRATION_EVENTS or self._vm not in (None, event.vm):
            return
        with self._lock:
            self._last = event.reason if self._vm else f"{event.vm}: {event.reason}"
            if self._operation is not None:
                self._operation.progress = self._last

    def __enter__(self) -> None:
        self._unsubscribe = self._engine.events.subscribe(self._offer)

    def __exit__(self, *exc: object) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()


class Uploads:
    """One upload per placeholder at a time: two would interleave their bytes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[tuple[str, str]] = set()

    @contextlib.contextmanager
    def one(self, migration_id: str, target: str) -> Iterator[None]:
        key = (migration_id, target)
        with self._lock:
            if key in self._running:
                raise Conflict(f"disk {target} of migration {migration_id} is being uploaded already")
            self._running.add(key)
        try:
            yield
        finally:
            with self._lock:
                self._running.discard(key)


async def receive_into(request: Request, placeholder: Path, limit: int, target: str) -> int:
    """Write the streamed body over the placeholder, a block at a time off the event loop; all-zero blocks
    are left as holes. Beyond `limit` bytes: 413, and the rest is never read."""
    fd = await asyncio.to_thread(os.open, placeholder, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC)
    total, block = 0, bytearray()
    try:
        try:
            async for chunk in request.stream():
                total += len(chunk)
                if total > limit:
                    raise _too_large(target, limit)
                block += chunk
                if len(block) >= BLOCK:
                    whole = len(block) - len(block) % BLOCK
                    await asyncio.to_thread(_write_blocks, fd, bytes(block[:whole]))
                    del block[:whole]
        except ClientDisconnect:
            raise VmhostError(f"the upload of disk {target} ended after {total} bytes: the source left") from None
        if block:
            await asyncio.to_thread(_write_blocks, fd, bytes(block))
        await asyncio.to_thread(_settle, fd, total)
    finally:
        os.close(fd)
    return total


def _write_blocks(fd: int, data: bytes) -> None:
    """BLOCK-aligned pieces (the last may be shorter); an all-zero one is skipped, leaving a hole."""
    view = memoryview(data)
    for start in range(0, len(view), BLOCK):
        piece = view[start : start + BLOCK]
        if data.count(0, start, start + len(piece)) == len(piece):
            os.lseek(fd, len(piece), os.SEEK_CUR)
            continue
        while piece:
            piece = piece[os.write(fd, piece) :]


def _settle(fd: int, total: int) -> None:
    """The length the source sent (holes at the end included), on disk before the answer."""
    os.ftruncate(fd, total)
    os.fsync(fd)


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        raise HTTPException(status_code=400, detail="Content-Length must be a number of bytes") from None


def _too_large(target: str, limit: int) -> HTTPException:
    return HTTPException(
        status_code=413, detail=f"disk {target}: the upload is larger than the disk offered ({limit} bytes at most)"
    )
