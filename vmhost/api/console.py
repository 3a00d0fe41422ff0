"""The serial console as a websocket (guest output as binary frames out, keystrokes in), and its log followed.

Neither holds a thread while idle: the log is polled with asyncio.sleep and ends when the client leaves; the
websocket sends one chunk at a time (a client that does not read stops the reading, and the driver's bounded
buffer then stops reading the guest's console).
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from starlette.requests import Request

from vmhost.api.agent import Agent
from vmhost.api.errors import error_body, status_of
from vmhost.drivers.base import ConsoleStream
from vmhost.engine.logs import read_from
from vmhost.errors import VmhostError

log = logging.getLogger("vmhost.http")

READ_SLICE = 0.25
FOLLOW_POLL = 0.2
ALIVE_EVERY = 1.0
"""Seconds between asking the hypervisor whether a followed VM still runs (the log is read every FOLLOW_POLL)."""


async def follow_console_log(request: Request, path: Path, alive: Callable[[], bool]) -> AsyncIterator[bytes]:
    """The log so far, then each new chunk; ends once the VM is gone and the log has stopped growing, or as soon
    as the client has left. Reads are small local-file reads on the loop; only the liveness check, once a second,
    borrows a thread."""
    offset, running, checked = 0, True, 0.0
    while not await request.is_disconnected():
        if time.monotonic() - checked >= ALIVE_EVERY:
            running, checked = await asyncio.to_thread(alive), time.monotonic()
        data = read_from(path, offset)
        if data:
            offset += len(data)
            yield data
        elif not running:
            return
        else:
            await asyncio.sleep(FOLLOW_POLL)


async def serve_console(websocket: WebSocket, agent: Agent, vm: str) -> None:
    """Refuses the handshake with the API's error body when there is no console (as an HTTP route would), and
    logs each session like a request: who, which VM, how long, how it ended."""
    try:
        stream = await asyncio.to_thread(agent.engine.open_console, vm)
    except VmhostError as exc:
        await refuse_websocket(websocket, exc)
        return
    await websocket.accept()
    session = {
        "vm": vm,
        "client": websocket.client.host if websocket.client else None,
        "principal": getattr(websocket.scope.get("state", {}).get("principal"), "name", None) or None,
    }
    log.info("console opened", extra=session)
    began, ended = time.monotonic(), "agent stopped"
    try:
        ended = await _relay(websocket, stream)
    finally:
        await asyncio.to_thread(stream.close)
        log.info("console closed", extra={**session, "seconds": round(time.monotonic() - began, 3), "ended": ended})


async def refuse_websocket(websocket: WebSocket, exc: VmhostError) -> None:
    """The handshake answered with the API's error body (where the server can), else a close naming it."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse(error_body(exc), status_code=status_of(exc)))
        return
    await websocket.accept()
    await websocket.close(code=4004, reason=exc.message[:120])


async def _relay(websocket: WebSocket, stream: ConsoleStream) -> str:
    """Copies both ways until one side ends; returns which did ("the VM stopped" or "client left")."""
    return await first_to_end(_guest_to_client(websocket, stream), _client_to_guest(websocket, stream))


async def first_to_end(*directions: Coroutine[Any, Any, str]) -> str:
    """Both directions of a relay at once until one ends, the other cancelled; what the first one said."""
    tasks = [asyncio.create_task(direction) for direction in directions]
    try:
        done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
    return next(iter(done)).result()


async def _guest_to_client(websocket: WebSocket, stream: ConsoleStream) -> str:
    while True:
        try:
            data = await asyncio.to_thread(stream.read, READ_SLICE)
        except EOFError:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await websocket.close(code=1000, reason="the VM stopped")
            return "the VM stopped"
        if data:
            try:
                await websocket.send_bytes(data)
            except (WebSocketDisconnect, RuntimeError, OSError):
                return "client left"


async def _client_to_guest(websocket: WebSocket, stream: ConsoleStream) -> str:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return "client left"
        data = message.get("bytes") or (message.get("text") or "").encode()
        if data:
            try:
                await asyncio.to_thread(stream.write, data)
            except EOFError:
                return "the VM stopped"
