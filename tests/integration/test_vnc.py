"""The VNC display through the agent's websocket (GET /v1/vms/{vm}/vnc) against a real QEMU with a VNC password:
the agent authenticates to QEMU itself and the client gets an RFB session with no password to give."""

from collections.abc import Callable
from typing import Any

import pytest
import websockets.exceptions
import websockets.sync.client

from tests.integration.running_agent import RunningAgent
from vmhost.api.vnc import vnc_response
from vmhost.engine import Engine

pytestmark = pytest.mark.integration


class Rfb:
    """An RFB client's reads over the websocket, however the bytes are framed."""

    def __init__(self, socket: websockets.sync.client.ClientConnection):
        self.socket, self.buffer = socket, b""

    def read(self, count: int) -> bytes:
        while len(self.buffer) < count:
            message = self.socket.recv(timeout=10)
            assert isinstance(message, bytes), message
            self.buffer += message
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data


def test_the_vnc_websocket_opens_a_password_protected_display_without_giving_out_the_password(
    agent: RunningAgent,
    engine: Engine,
    guest_spec: Callable[..., dict[str, Any]],
    vm_name: Callable[[str], str],
) -> None:
    name = vm_name("vnc")
    engine.create(guest_spec(name, graphics={"type": "vnc", "password": "Vnc-pw1"}), start=True)
    url = f"ws://127.0.0.1:{agent.port}/v1/vms/{name}/vnc?token={agent.token}"
    with websockets.sync.client.connect(url) as socket:
        rfb = Rfb(socket)
        assert rfb.read(12) == b"RFB 003.008\n"
        socket.send(b"RFB 003.008\n")
        assert rfb.read(2) == bytes([1, 1])  # one security type: None
        socket.send(bytes([1]))
        assert rfb.read(4) == b"\0\0\0\0"
        socket.send(bytes([1]))  # ClientInit, shared
        width, height = int.from_bytes(rfb.read(2)), int.from_bytes(rfb.read(2))
        rfb.read(16)  # pixel format
        desktop = rfb.read(int.from_bytes(rfb.read(4))).decode()
    assert width > 0 and height > 0
    assert name in desktop or "QEMU" in desktop, desktop


def test_the_vnc_websocket_of_a_vm_without_vnc_is_refused_with_the_reason(
    agent: RunningAgent,
    engine: Engine,
    guest_spec: Callable[..., dict[str, Any]],
    vm_name: Callable[[str], str],
) -> None:
    name = vm_name("novnc")
    engine.create(guest_spec(name), start=True)
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        websockets.sync.client.connect(f"ws://127.0.0.1:{agent.port}/v1/vms/{name}/vnc?token={agent.token}")
    assert refused.value.response.status_code == 409
    assert b"has no VNC display" in refused.value.response.body


def test_vnc_authentication_is_des_of_the_challenge_with_the_bit_reversed_password() -> None:
    # computed apart from vmhost: openssl enc -des-ecb -nopad -K 0e86ceceeef64e26 ("password", bits reversed)
    assert vnc_response("password", bytes(16)).hex() == "ff97502e9422f089" * 2
    assert vnc_response("longer-than-8", bytes(16)) == vnc_response("longer-t", bytes(16))
