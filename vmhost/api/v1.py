"""The native API, version 1."""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import yaml
from fastapi import APIRouter, Body, Depends, Query, Request, Response, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from vmhost.api import changes
from vmhost.api.agent import WAIT_LIMIT, Agent
from vmhost.api.console import follow_console_log, serve_console
from vmhost.api.fleet import local_changes_guard
from vmhost.api.models import DiskDetach, ErrorBody, HostView, OperationView, RebootOptions, StopOptions, VmSummary
from vmhost.api.operations import CallbackTargets, Operation
from vmhost.api.vnc import serve_vnc
from vmhost.dialects.zstack import NAME_LABEL
from vmhost.drivers.report import host_report
from vmhost.engine import Engine
from vmhost.engine.events import VmEvent
from vmhost.engine.lifecycle import GONE
from vmhost.engine.states import VmState
from vmhost.engine.views import Listing, ListQuery
from vmhost.errors import VmhostError
from vmhost.spec import Problem, SpecError
from vmhost.spec.graphics import REVEAL_SECRETS

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": meaning}
    for status, meaning in (
        (400, "malformed request (unknown filter, sort or field, a cursor not of this listing, body not JSON)"),
        (401, "no or wrong token"),
        (404, "no such VM"),
        (409, "busy or conflicting"),
        (422, "invalid input"),
        (501, "the VM's driver does not support this (details name the driver and the capability)"),
        (502, "the hypervisor failed"),
    )
}
Wait = Annotated[bool, Query(description="Block until the operation finishes.")]
Callback = Annotated[
    str | None, Query(description="URL that receives the finished operation (POST).", pattern=r"^https?://")
]
SPEC_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/VMSpec"}},
            "application/yaml": {"schema": {"$ref": "#/components/schemas/VMSpec"}},
        },
    }
}
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")
LIST_PARAMS = ("state", "sort", "fields", "limit", "after", "runtime")
"""GET /v1/vms's declared query params; any other is a field=value or label.KEY=value filter."""
NEXT_PAGE = {
    "Link": {"description": '`<URL>; rel="next"` while more rows follow the page', "schema": {"type": "string"}}
}
PATCH_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}}


def router(agent: Agent) -> APIRouter:
    api = APIRouter(prefix="/v1", dependencies=[Depends(agent.auth), local_changes_guard(agent)], responses=ERRORS)
    engine, operations = agent.engine, agent.operations
    targets = CallbackTargets.of(agent.config)

    def checked(callback_url: str | None) -> str | None:
        """A callback URL outside the callback networks is refused (400) before anything runs."""
        if callback_url is not None:
            targets.check(callback_url, "callback_url")
        return callback_url

    def run(kind: str, vm: str, work: Callable[[str], Any], callback_url: str | None) -> Operation:
        """Submit `work(name)` for an existing VM (404 now if it does not exist, 409 if it is busy)."""
        checked(callback_url)
        record = engine.record(vm)
        return operations.submit(
            kind, record.name, lambda: work(record.name), vm_uuid=record.uuid, callback_url=callback_url
        )

    @api.post("/vms", status_code=202, response_model=OperationView, openapi_extra=SPEC_BODY, tags=["vms"])
    async def create_vm(
        request: Request, start: bool = False, wait: Wait = False, callback_url: Callback = None
    ) -> Response:
        """Create a VM from a spec, JSON or YAML (checked at once against the spec rules and this host: 422
        lists every problem); `start` boots it too."""
        spec = await asyncio.to_thread(engine.validate, await _spec_document(request))
        _refuse_dialect_label(spec.labels, None)
        document = spec.model_dump(mode="json", context={REVEAL_SECRETS: True})
        operation = operations.submit(
            "create",
            spec.name,
            lambda: engine.get(engine.create(document, start=start).name),
            vm_uuid=str(spec.uuid),
            callback_url=checked(callback_url),
        )
        return await agent.respond(operation, wait)

    @api.post("/validate", openapi_extra=SPEC_BODY, tags=["vms"], responses={422: {"model": ErrorBody}})
    async def validate_spec(request: Request, offline: bool = False) -> dict[str, Any]:
        """Check a spec as create would, creating nothing: 200 when create would take it, else 422 with every
        problem (spec and host checks together; `offline` skips the host's)."""
        spec = await asyncio.to_thread(engine.validate, await _spec_document(request), offline=offline)
        return {"valid": True, "name": spec.name, "host_checked": not offline}

    listing = Listing(engine.store, engine.config.accel)

    @api.get("/vms", response_model=list[VmSummary], tags=["vms"], responses={200: {"headers": NEXT_PAGE}})
    def list_vms(
        request: Request,
        *,
        state: Annotated[VmState | None, Query(description="Only VMs in this state.")] = None,
        sort: Annotated[str | None, Query(description="field[,field]; '-field' descending; names break ties.")] = None,
        fields: Annotated[str | None, Query(description="Comma-separated fields to answer (default: all).")] = None,
        limit: Annotated[int | None, Query(ge=1, le=1000, description="At most this many rows (a page).")] = None,
        after: Annotated[str | None, Query(description="The cursor of the previous page's Link rel=next.")] = None,
        runtime: Annotated[
            bool, Query(description="Add uptime_seconds and the guests' addresses of running VMs (a call each).")
        ] = False,
    ) -> Response:
        """The VMs in the agent's store (kept fresh in the background), answered from memory until the store
        changes. Any other `field=value` or `label.KEY=value` query param filters; with `limit`, a Link header
        (rel="next") names the next page while there is one."""
        filters = [(k, v) for k, v in request.query_params.multi_items() if k not in LIST_PARAMS]
        if state is not None:
            filters.append(("state", state.value))
        try:
            query = ListQuery.of(filters, sort, fields, limit, after)
            page = listing.page(query)
        except ValueError as exc:
            raise VmhostError(str(exc)) from None
        headers = {"Link": f'<{_next_page(request, page.after)}>; rel="next"'} if page.after else None
        if runtime:
            return JSONResponse(_with_runtime(engine, json.loads(page.body)), headers=headers)
        return Response(page.body, media_type="application/json", headers=headers)

    @api.get("/vms/{vm}", tags=["vms"])
    def get_vm(vm: str) -> dict[str, Any]:
        """The VM: its spec (secrets masked) with `state`, `state_reason` and `runtime`."""
        return engine.get(vm)

    @api.get("/vms/{vm}/stats", tags=["vms"])
    def stats(vm: str) -> dict[str, Any]:
        """The last minutes of the VM's counters (CPU seconds, memory, disk and network bytes since it started),
        one sample every `interval` seconds while it runs; empty when it does not."""
        name = engine.record(vm).name
        return {"vm": name, "interval": agent.stats.interval, "samples": agent.stats.of(name)}

    @api.get("/vms/{vm}/info", tags=["vms"])
    def vm_info(vm: str) -> dict[str, Any]:
        return engine.info(vm)

    @api.patch(
        "/vms/{vm}",
        status_code=202,
        response_model=OperationView,
        openapi_extra=PATCH_BODY,
        tags=["vms"],
        responses=changes.PLANNED,
    )
    async def update_vm(
        vm: str,
        request: Request,
        *,
        live: changes.Live = False,
        dry_run: changes.DryRun = False,
        wait: Wait = False,
        callback_url: Callback = None,
    ) -> Response:
        """A JSON merge patch on the stored spec, planned first (vmhost/api/changes.py)."""
        patch = await _json(request)
        if isinstance(patch, dict) and isinstance(patch.get("labels"), dict):
            current = await asyncio.to_thread(engine.record, vm)
            _refuse_dialect_label(patch["labels"], current.spec.get("labels", {}).get(NAME_LABEL))
        return await changes.planned_update(
            agent, vm, patch, live=live, dry_run=dry_run, wait=wait, callback_url=callback_url
        )

    @api.delete("/vms/{vm}", status_code=202, response_model=OperationView, tags=["vms"])
    async def delete_vm(vm: str, wait: Wait = False, callback_url: Callback = None) -> Response:
        operation = run("delete", vm, engine.delete, callback_url)
        return await agent.respond(operation, wait)

    @api.post("/vms/{vm}/start", status_code=202, response_model=OperationView, tags=["actions"])
    async def start_vm(vm: str, wait: Wait = False, callback_url: Callback = None) -> Response:
        operation = run("start", vm, lambda name: _state(engine.start(name).name), callback_url)
        return await agent.respond(operation, wait)

    @api.post("/vms/{vm}/stop", status_code=202, response_model=OperationView, tags=["actions"])
    async def stop_vm(
        vm: str,
        options: Annotated[StopOptions | None, Body()] = None,
        wait: Wait = False,
        callback_url: Callback = None,
    ) -> Response:
        options = options or StopOptions()
        _refuse_long_timeout(options.timeout, agent.config.max_stop_timeout)
        operation = run(
            "stop",
            vm,
            lambda name: vars(engine.stop(name, force=options.force, timeout=options.timeout)),
            callback_url,
        )
        return await agent.respond(operation, wait)

    @api.post("/vms/{vm}/reboot", status_code=202, response_model=OperationView, tags=["actions"])
    async def reboot_vm(
        vm: str,
        options: Annotated[RebootOptions | None, Body()] = None,
        wait: Wait = False,
        callback_url: Callback = None,
    ) -> Response:
        force = (options or RebootOptions()).force
        operation = run("reboot", vm, lambda name: engine.reboot(name, force=force), callback_url)
        return await agent.respond(operation, wait)

    @api.post("/vms/{vm}/kill", status_code=202, response_model=OperationView, tags=["actions"])
    async def kill_vm(vm: str, wait: Wait = False, callback_url: Callback = None) -> Response:
        operation = run("kill", vm, engine.kill, callback_url)
        return await agent.respond(operation, wait)

    @api.post("/vms/{vm}/pause", status_code=202, response_model=OperationView, tags=["actions"])
    async def pause_vm(vm: str, wait: Wait = False, callback_url: Callback = None) -> Response:
        operation = run("pause", vm, engine.pause, callback_url)
        return await agent.respond(operation, wait)

    @api.post("/vms/{vm}/resume", status_code=202, response_model=OperationView, tags=["actions"])
    async def resume_vm(vm: str, wait: Wait = False, callback_url: Callback = None) -> Response:
        operation = run("resume", vm, engine.resume, callback_url)
        return await agent.respond(operation, wait)

    @api.post(
        "/vms/{vm}/disks",
        status_code=202,
        response_model=OperationView,
        tags=["actions"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Disk"}}},
            }
        },
    )
    async def attach_disk(vm: str, request: Request, wait: Wait = False, callback_url: Callback = None) -> Response:
        """Add a disk (hot-plugged when the VM runs); the result is its target."""
        disk = await _json(request)
        operation = run("attach-disk", vm, lambda name: {"target": engine.attach_disk(name, disk)}, callback_url)
        return await agent.respond(operation, wait)

    @api.post("/vms/{vm}/disks/detach", status_code=202, response_model=OperationView, tags=["actions"])
    async def detach_disk(vm: str, disk: DiskDetach, wait: Wait = False, callback_url: Callback = None) -> Response:
        operation = run("detach-disk", vm, lambda name: engine.detach_disk(name, disk.target), callback_url)
        return await agent.respond(operation, wait)

    @api.get(
        "/vms/{vm}/console/log",
        tags=["console"],
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "the console output"}},
    )
    async def console_log(request: Request, vm: str, follow: bool = False) -> Response:
        """What the serial console (a container's stdout/stderr) has said so far; with follow, streamed as it
        grows until the VM is gone or the client leaves."""
        path = await asyncio.to_thread(engine.console_log_path, vm)
        if follow:
            record = await asyncio.to_thread(engine.record, vm)
            stream = follow_console_log(request, path, lambda: engine.driver.state(record.name) not in GONE)
            return StreamingResponse(stream, media_type="text/plain")
        return PlainTextResponse(await asyncio.to_thread(_read_all, path))

    @api.websocket("/vms/{vm}/console")
    async def console(websocket: WebSocket, vm: str) -> None:
        """Serial console as a websocket: binary frames both ways (not in OpenAPI: websockets are not HTTP)."""
        await serve_console(websocket, agent, vm)

    @api.websocket("/vms/{vm}/vnc")
    async def vnc(websocket: WebSocket, vm: str) -> None:
        """The VNC display as a websocket for noVNC: RFB 3.8 without a password; the agent authenticates to the
        VM's display itself (vmhost/api/vnc.py)."""
        await serve_vnc(websocket, agent, vm)

    @api.get(
        "/events",
        tags=["events"],
        response_class=Response,
        responses={200: {"content": {"text/event-stream": {}}, "description": "one `data:` JSON object per change"}},
    )
    async def events(
        request: Request,
        vm: Annotated[str | None, Query(description="Only this VM (name).")] = None,
        since: Annotated[float, Query(ge=0, description="Replay kept events newer than this Unix time.")] = 0.0,
        follow: Annotated[bool, Query(description="Keep the stream open for new events.")] = False,
    ) -> StreamingResponse:
        """State changes as server-sent events, like `vmadm events`: replayed from `since`, then live."""
        return StreamingResponse(_event_stream(request, engine, vm, since, follow), media_type="text/event-stream")

    @api.get("/operations", response_model=list[OperationView], tags=["operations"])
    def list_operations(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
        return [operation.view() for operation in operations.recent(limit)]

    @api.get("/operations/{operation_id}", response_model=OperationView, tags=["operations"])
    async def get_operation(operation_id: str, wait: Wait = False) -> dict[str, Any]:
        operation = operations.get(operation_id)
        if wait:
            await operation.finished(WAIT_LIMIT)
        return operation.view()

    @api.get("/host", response_model=HostView, tags=["host"])
    def host() -> dict[str, Any]:
        """The host's facts and each driver's capabilities (what `vmhost host` prints)."""
        return host_report(engine.driver, len(engine.list_vms_cached()))

    def _state(name: str) -> dict[str, Any]:
        return {"name": name, "state": engine.get(name)["state"]}

    api.include_router(changes.router(agent))
    return api


KEEPALIVE_SECONDS = 15.0
EVENT_BACKLOG = 1000
"""Events queued for one follower that does not read; one more ends its stream (it resumes with `since`)."""


async def _event_stream(
    request: Request, engine: Engine, vm: str | None, since: float, follow: bool
) -> AsyncIterator[str]:
    """Subscribe first, then replay, so nothing falls between the two. A follower EVENT_BACKLOG events behind is
    cut off with a comment saying where to resume, rather than queueing for it without bound."""
    loop = asyncio.get_running_loop()
    live: asyncio.Queue[VmEvent] = asyncio.Queue(EVENT_BACKLOG)
    behind = asyncio.Event()

    def offer(event: VmEvent) -> None:
        if live.full():
            behind.set()
        else:
            live.put_nowait(event)

    unsubscribe = engine.events.subscribe(lambda event: loop.call_soon_threadsafe(offer, event))
    try:
        replayed = engine.events.recent(since)
        for event in replayed:
            if vm in (None, event.vm):
                yield f"data: {json.dumps(event.view())}\n\n"
        last, resume = (replayed[-1].seq, replayed[-1].time) if replayed else (0, since)
        stopping: asyncio.Event = request.app.state.stopping
        while follow and not await request.is_disconnected():
            if behind.is_set():
                yield f": too far behind; reconnect with since={resume}\n\n"
                return
            arrived = await _next_event(live, stopping)
            if stopping.is_set():
                yield f": the agent is stopping; reconnect with since={resume}\n\n"
                return
            if arrived is None:
                yield ": keepalive\n\n"
                continue
            if arrived.seq > last and vm in (None, arrived.vm):
                resume = arrived.time
                yield f"data: {json.dumps(arrived.view())}\n\n"
    finally:
        unsubscribe()


async def _next_event(live: asyncio.Queue[VmEvent], stopping: asyncio.Event) -> VmEvent | None:
    """The next live event; None after KEEPALIVE_SECONDS without one, or once the agent is stopping."""
    getting, waiting = asyncio.ensure_future(live.get()), asyncio.ensure_future(stopping.wait())
    await asyncio.wait((getting, waiting), timeout=KEEPALIVE_SECONDS, return_when=asyncio.FIRST_COMPLETED)
    getting.cancel()
    waiting.cancel()
    return getting.result() if getting.done() and not getting.cancelled() else None


def _with_runtime(engine: Engine, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        if row.get("state") in (VmState.RUNNING.value, VmState.PAUSED.value) and "name" in row:
            with contextlib.suppress(VmhostError):  # gone or not answering since the page was made
                row.update(engine.runtime_facts(row["name"]))
    return rows


def _next_page(request: Request, after: str) -> str:
    """This request's path and query with the next page's cursor (relative: right behind any proxy)."""
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "after"] + [("after", after)]
    return f"{request.url.path}?{urlencode(query)}"


def _read_all(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


def _refuse_dialect_label(labels: Any, current: str | None) -> None:
    """Only the ZStack dialect marks its VMs: a native caller may neither set nor change the mark (it decides
    which VMs a trusted source, with no token, may act on)."""
    if NAME_LABEL in labels and labels[NAME_LABEL] != current:
        raise SpecError([Problem(f"labels.{NAME_LABEL}", "is reserved for VMs created through the ZStack dialect")])


def _refuse_long_timeout(timeout: float | None, ceiling: float) -> None:
    """Like the body's other limits: 422 naming the field (ZStack's stop answers the same refusal)."""
    if timeout is not None and timeout > ceiling:
        raise RequestValidationError(
            [{"loc": ("body", "timeout"), "msg": f"must be at most {ceiling:g} seconds (max_stop_timeout)"}]
        )


async def _spec_document(request: Request) -> Any:
    """A spec as JSON, or as YAML when the content type says so (as the CLI reads either)."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() not in YAML_TYPES:
        return await _json(request)
    try:
        return yaml.safe_load(await request.body())
    except yaml.YAMLError as exc:
        raise VmhostError(f"the request body is not valid YAML: {exc}") from None


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise VmhostError("the request body is not valid JSON") from None
