"""The graphical console as a websocket: the agent speaks RFB to the VM's VNC server itself (authenticating with
the VM's VNC password, which it has and the browser never gets), then offers the browser an RFB 3.8 session
without authentication and relays the bytes both ways. Only callers the console websocket admits reach it (an
admin token, or a session from the agent's own page): the agent's auth stands in for the VNC password.
"""

import asyncio
import contextlib
import logging
import struct
import time

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from fastapi import WebSocket, WebSocketDisconnect

from vmhost.api.agent import Agent
from vmhost.api.console import first_to_end, refuse_websocket
from vmhost.errors import Conflict, VmhostError

log = logging.getLogger("vmhost.http")
VERSION = b"RFB 003.008\n"
NO_AUTH, VNC_AUTH = 1, 2
HANDSHAKE_TIMEOUT = 10.0
CHUNK = 65536


class RfbError(Exception):
    """The VNC server's side of the handshake failed: its own words where it gave any."""


def vnc_response(password: str, challenge: bytes) -> bytes:
    """VNC authentication: the challenge DES-encrypted with the password (8 bytes, zero-padded, each byte's bits
    reversed, as RFB 6.2.2's implementations do). Single DES is triple DES with one key three times."""
    key = bytes(int(f"{byte:08b}"[::-1], 2) for byte in password.encode("latin-1")[:8].ljust(8, b"\0"))
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()
    return encryptor.update(challenge) + encryptor.finalize()


async def _reason(reader: asyncio.StreamReader) -> str:
    (length,) = struct.unpack(">I", await reader.readexactly(4))
    return (await reader.readexactly(min(length, 4096))).decode("utf-8", "replace")


async def authenticate(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, password: str | None) -> None:
    """The client's half of the RFB 3.8 handshake with the VM's server, up to (not including) ClientInit."""
    server_version = await reader.readexactly(12)
    if not server_version.startswith(b"RFB 003."):
        raise RfbError(f"not a VNC server (it said {server_version!r})")
    writer.write(VERSION)
    (count,) = await reader.readexactly(1)
    if count == 0:
        raise RfbError(f"the VNC server refused: {await _reason(reader)}")
    offered = set(await reader.readexactly(count))
    if password is not None and VNC_AUTH in offered:
        writer.write(bytes([VNC_AUTH]))
        writer.write(vnc_response(password, await reader.readexactly(16)))
    elif NO_AUTH in offered:
        writer.write(bytes([NO_AUTH]))
    else:
        raise RfbError(f"the VNC server offers no security type vmhost speaks ({sorted(offered)})")
    await writer.drain()
    (result,) = struct.unpack(">I", await reader.readexactly(4))
    if result != 0:
        raise RfbError(f"the VNC server refused the password: {await _reason(reader)}")


class WebSocketBytes:
    """Exact reads from a websocket's binary messages (RFB is a byte stream, framed however the client likes)."""

    def __init__(self, websocket: WebSocket):
        self.websocket, self.buffer = websocket, b""

    async def read(self, count: int) -> bytes:
        while len(self.buffer) < count:
            self.buffer += await self.websocket.receive_bytes()
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data


async def offer_no_auth(websocket: WebSocket, incoming: WebSocketBytes) -> None:
    """The server's half to the browser: RFB 3.8, one security type (None), result OK."""
    await websocket.send_bytes(VERSION)
    client_version = await incoming.read(12)
    if not client_version.startswith(b"RFB 003."):
        raise RfbError(f"not an RFB client ({client_version!r})")
    await websocket.send_bytes(bytes([1, NO_AUTH]))
    if (await incoming.read(1))[0] != NO_AUTH:
        raise RfbError("the client chose a security type that was not offered")
    await websocket.send_bytes(struct.pack(">I", 0))


async def serve_vnc(websocket: WebSocket, agent: Agent, vm: str) -> None:
    began = time.monotonic()
    try:
        address, port, password = await asyncio.to_thread(_display_of, agent, vm)
    except VmhostError as exc:
        await refuse_websocket(websocket, exc)
        return
    await websocket.accept()
    ended = "closed"
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), HANDSHAKE_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        await websocket.close(code=1011, reason=f"cannot reach the VM's display: {exc}"[:120])
        return
    try:
        incoming = WebSocketBytes(websocket)
        await asyncio.wait_for(authenticate(reader, writer, password), HANDSHAKE_TIMEOUT)
        await asyncio.wait_for(offer_no_auth(websocket, incoming), HANDSHAKE_TIMEOUT)
        if incoming.buffer:
            writer.write(incoming.buffer)
        ended = await _relay(websocket, reader, writer)
    except (RfbError, asyncio.IncompleteReadError, TimeoutError) as exc:
        ended = f"handshake failed: {exc}"
        with contextlib.suppress(Exception):
            await websocket.close(code=1011, reason=ended[:120])
    finally:
        writer.close()
        log.info("vnc closed", extra={"vm": vm, "seconds": round(time.monotonic() - began, 3), "ended": ended})


def _display_of(agent: Agent, vm: str) -> tuple[str, int, str | None]:
    """Where the VM's VNC server listens (loopback when it listens on every address) and its password."""
    record = agent.engine.record(vm)
    graphics = record.spec.get("graphics") or {}
    if graphics.get("type") != "vnc":
        raise Conflict(f"{record.name} has no VNC display (graphics.type vnc)")
    port = agent.engine.driver.graphics_ports(record.name).get("vnc", -1)
    if port <= 0:
        raise Conflict(f"{record.name} is not running")
    listen = str(graphics.get("listen") or "127.0.0.1")
    address = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(listen, listen)
    return address, port, graphics.get("password")


async def _relay(websocket: WebSocket, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
    async def to_browser() -> str:
        while chunk := await reader.read(CHUNK):
            await websocket.send_bytes(chunk)
        return "the VM's display closed"

    async def to_display() -> str:
        try:
            while True:
                writer.write(await websocket.receive_bytes())
                await writer.drain()
        except WebSocketDisconnect:
            return "the browser left"

    try:
        return await first_to_end(to_browser(), to_display())
    except Exception as exc:  # a connection that broke: logged as how the session ended
        return f"error: {exc}"
