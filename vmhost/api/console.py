"""The serial console as a websocket: guest output as binary frames out, keystrokes in."""

import asyncio
import contextlib

from fastapi import WebSocket, WebSocketDisconnect

from vmhost.api.agent import Agent
from vmhost.drivers.base import ConsoleStream
from vmhost.errors import VmhostError

READ_SLICE = 0.25


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
