"""The ZStack KVM-agent paths: ZStack's request and reply shapes on top of vmhost's engine.

Replies are {success, error, ...path fields}. Async paths (everything but /host/connect and /host/echo, as
in ZStack's current agent) answer at once with an empty body and post the reply to the callbackurl header.
Every path needs the agent token unless the caller is in zstack_trusted_sources (a management node cannot
send a bearer token).
"""

import asyncio
import json
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from vmhost.api.agent import Agent
from vmhost.api.errors import error_body, status_of
from vmhost.api.operations import CallbackTargets
from vmhost.api.zstack import day_two, migrate
from vmhost.api.zstack.handlers import ZStackHost
from vmhost.api.zstack.tasks import TASK_HEADER, AsyncTasks, Job, Reply, failure, success, task_of

log = logging.getLogger("vmhost.zstack")

Command = dict[str, Any]
AsyncHandler = Callable[[ZStackHost, Command], Job]
SyncHandler = Callable[[ZStackHost, Command], Reply]

ASYNC_PATHS: dict[str, AsyncHandler] = {
    "/host/ping": ZStackHost.ping,
    "/host/capacity": ZStackHost.capacity,
    "/vm/start": ZStackHost.start,
    "/vm/stop": ZStackHost.stop,
    "/vm/reboot": ZStackHost.reboot,
    "/vm/destroy": ZStackHost.destroy,
    "/vm/pause": ZStackHost.pause,
    "/vm/resume": ZStackHost.resume,
    "/vm/vmsync": ZStackHost.vmsync,
    "/vm/checkstate": ZStackHost.checkstate,
    "/vm/getvncport": ZStackHost.getvncport,
    "/vm/attachdatavolume": ZStackHost.attach_volume,
    "/vm/detachdatavolume": ZStackHost.detach_volume,
    "/vm/createcephsecret": ZStackHost.create_ceph_secret,
    **day_two.PATHS,
    **migrate.PATHS,
}
SYNC_PATHS: dict[str, SyncHandler] = {
    "/host/connect": ZStackHost.connect,
}
ECHO_PATH = "/host/echo"


def router(agent: Agent) -> APIRouter:
    host = ZStackHost(agent.engine, agent.config.zstack_console_listen, agent.config.max_stop_timeout)
    api = command_router(agent, host, ASYNC_PATHS)
    for path, handle in SYNC_PATHS.items():
        _route(api, path, _sync_endpoint(host, handle))
    _route(api, ECHO_PATH, _echo)
    return api


def command_router(agent: Agent, host: ZStackHost, paths: dict[str, AsyncHandler], tag: str = "zstack") -> APIRouter:
    """Paths that speak ZStack's async protocol (taskuuid + callbackurl); plugins extending the dialect use it."""
    api = APIRouter(
        dependencies=[Depends(agent.auth.trusted_or_token)],
        tags=[tag],
        responses={
            400: {
                "description": "no taskuuid/callbackurl header on an async path (or one outside the callback "
                "networks), or a taskuuid on a sync path"
            },
            401: {"description": "no or wrong token, and the caller is not a trusted source"},
            503: {"description": "zstack_task_limit tasks are in flight; retry later"},
        },
    )
    tasks = AsyncTasks(agent.operations, CallbackTargets.of(agent.config), agent.config.zstack_task_limit)
    for path, plan in paths.items():
        _route(api, path, _async_endpoint(host, tasks, plan))
    return api


def _route(api: APIRouter, path: str, endpoint: Callable[..., Any]) -> None:
    """ZStack's agent answers each path with and without a trailing slash; so does this one."""
    api.add_api_route(path, endpoint, methods=["POST"], name=path, response_class=Response)
    api.add_api_route(path + "/", endpoint, methods=["POST"], name=path + "/", include_in_schema=False)


def _async_endpoint(host: ZStackHost, tasks: AsyncTasks, plan: AsyncHandler) -> Callable[..., Any]:
    async def endpoint(request: Request) -> Response:
        task = task_of(request, tasks.targets)
        command = await _command(request)
        await asyncio.to_thread(tasks.run, task, partial(plan, host, command))
        return Response(status_code=200)

    return endpoint


def _sync_endpoint(host: ZStackHost, handle: SyncHandler) -> Callable[..., Any]:
    async def endpoint(request: Request) -> JSONResponse:
        _refuse_task(request)
        command = await _command(request)
        return JSONResponse(await asyncio.to_thread(_sync_reply, host, handle, command))

    return endpoint


def _sync_reply(host: ZStackHost, handle: SyncHandler, command: Command) -> Reply:
    """Errors become {success: false, error} like ZStack's @replyerror; the HTTP status stays 200."""
    try:
        return success(handle(host, command))
    except Exception as exc:
        if status_of(exc) == 500:
            log.exception("zstack sync call crashed")
        return failure(error_body(exc))


async def _echo(request: Request) -> Response:
    """The management node's "is the agent up" probe; ZStack's answers with an empty body."""
    _refuse_task(request)
    return Response(status_code=200)


def _refuse_task(request: Request) -> None:
    """ZStack's agent rejects a taskuuid on a sync path: the caller mistook it for an async one."""
    if request.headers.get(TASK_HEADER):
        raise HTTPException(status_code=400, detail=f"{request.url.path} is synchronous; drop the {TASK_HEADER} header")


async def _command(request: Request) -> Command:
    """The command body: a JSON object (empty for commands without fields, such as vmsync)."""
    body = await request.body()
    if not body.strip():
        return {}
    try:
        command = json.loads(body)
    except ValueError:
        raise HTTPException(status_code=400, detail="the request body is not valid JSON") from None
    if not isinstance(command, dict):
        raise HTTPException(status_code=400, detail="the request body must be a JSON object")
    return command
