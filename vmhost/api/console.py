"""The serial console as a websocket (guest output as binary frames out, keystrokes in), and its log followed.

Neither holds a thread while idle: the log is polled with asyncio.sleep and ends when the client leaves; the
websocket sends one chunk at a time (a client that does not read stops the reading, and the driver's bounded
buffer then stops reading the guest's console).
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from fastapi import WebSocket, WebSocketDisconnect
from starlette.requests import Request

from vmhost.api.agent import Agent
from vmhost.drivers.base import ConsoleStream
from vmhost.engine.logs import read_from
from vmhost.errors import VmhostError

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
    await websocket.accept()
    try:
        stream = await asyncio.to_thread(agent.engine.open_console, vm)
    except VmhostError as exc:
        await websocket.close(code=4004, reason=exc.message[:120])
        return
    try:
        await asyncio.gather(_guest_to_client(websocket, stream), _client_to_guest(websocket, stream))
    finally:
        await asyncio.to_thread(stream.close)
        with contextlib.suppress(RuntimeError):
            await websocket.close()


async def _guest_to_client(websocket: WebSocket, stream: ConsoleStream) -> None:
    while True:
        try:
            data = await asyncio.to_thread(stream.read, READ_SLICE)
        except EOFError:
            await websocket.close(code=1000, reason="the VM stopped")
            return
        if data:
            await websocket.send_bytes(data)


async def _client_to_guest(websocket: WebSocket, stream: ConsoleStream) -> None:
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect()
            data = message.get("bytes") or (message.get("text") or "").encode()
            if data:
                await asyncio.to_thread(stream.write, data)
    except WebSocketDisconnect:
        stream.close()
