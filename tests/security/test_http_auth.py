"""The HTTP agent decides who calls before it reads anything else: no forged client address, no body parsed or
buffered for an anonymous caller, bounded bodies, read-only tokens that only read, and plugin ports under the
same rules. Each test attacks a real agent (uvicorn configured as `vmhost serve` configures it) on loopback."""

import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets.exceptions
import websockets.sync.client
from fastapi import APIRouter, Request

from tests.integration.running_agent import RunningAgent, free_port
from vmhost.api.auth import TokenAuth
from vmhost.api.server import Listen, uvicorn_config
from vmhost.config import HostConfig, load_config
from vmhost.errors import VmhostError
from vmhost.host.tokens import create_token
from vmhost.plugins import Listener, Plugins, VmhostPlugin

MIB = 1 << 20


def raw_request(port: int, head: str, body: bytes = b"", timeout: float = 10) -> bytes:
    """One request over a plain socket (to send what httpx would not: lying lengths, hand-made chunks)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(head.encode() + b"\r\n" + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = connection.recv(65536)
            if not data:
                break
            answer += data
        return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def chunked(body: bytes, size: int) -> bytes:
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"


# --- 1. X-Forwarded-For and the trusted sources ---


def test_forwarded_for_does_not_make_a_local_caller_a_trusted_source(config: HostConfig, engine: Any) -> None:
    trusted = replace(config, zstack_trusted_sources=("10.9.9.0/24",))
    with RunningAgent(trusted) as agent:
        forged = httpx.post(f"{agent.url}/host/echo", headers={"X-Forwarded-For": "10.9.9.5"})
        assert forged.status_code == 401, forged.text
        assert forged.json()["code"] == "unauthorized"


def test_a_configured_proxy_may_forward_a_trusted_client(config: HostConfig, engine: Any) -> None:
    """The operator's opt-in: X-Forwarded-For is believed from the named proxies, and from them only."""
    proxied = replace(config, zstack_trusted_sources=("10.9.9.0/24",), trusted_proxies=("127.0.0.1",))
    with RunningAgent(proxied) as agent:
        assert httpx.post(f"{agent.url}/host/echo", headers={"X-Forwarded-For": "10.9.9.5"}).status_code == 200
        assert httpx.post(f"{agent.url}/host/echo", headers={"X-Forwarded-For": "10.8.8.5"}).status_code == 401


def test_proxy_headers_are_off_unless_trusted_proxies_are_configured(tmp_path: Path) -> None:
    listen = Listen("127.0.0.1", 7070)
    default = uvicorn_config(None, listen, 7070, HostConfig(data_dir=tmp_path))  # type: ignore[arg-type]
    assert default.proxy_headers is False
    proxied = uvicorn_config(None, listen, 7070, HostConfig(trusted_proxies=("192.0.2.1",)))  # type: ignore[arg-type]
    assert proxied.proxy_headers is True
    assert proxied.forwarded_allow_ips == ["192.0.2.1"]


def test_ipv4_mapped_ipv6_peer_is_matched_as_its_ipv4_address(tmp_path: Path) -> None:
    auth = TokenAuth(tmp_path, ("127.0.0.0/8",))
    for peer in ("::ffff:127.0.0.1", "127.0.0.1"):
        scope = {"type": "http", "client": (peer, 40000), "headers": []}
        principal = auth.decide(scope, trusted_path=True)
        assert principal is not None, peer
        assert principal.name == "trusted source 127.0.0.1"
    assert auth.decide({"type": "http", "client": ("::ffff:10.0.0.1", 1), "headers": []}, trusted_path=True) is None
    assert auth.decide({"type": "http", "client": ("::ffff:127.0.0.1", 1), "headers": []}, trusted_path=False) is None


def test_config_checks_trusted_proxies_and_max_body_bytes(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('trusted_proxies = ["192.0.2.0/24", "::1"]\nmax_body_bytes = 4096\n')
    config = load_config(path)
    assert config.trusted_proxies == ("192.0.2.0/24", "::1")
    assert config.max_body_bytes == 4096
    for text, problem in (
        ('trusted_proxies = ["proxy.example"]', "trusted_proxies: 'proxy.example' is not an IP address or CIDR"),
        ('trusted_proxies = "192.0.2.1"', "trusted_proxies must be a list"),
        ("max_body_bytes = 0", "max_body_bytes must be positive"),
        ('max_body_bytes = "1M"', "max_body_bytes must be a positive int"),
    ):
        path.write_text(text + "\n")
        with pytest.raises(VmhostError, match=problem):
            load_config(path)


# --- 2. Authentication before the body ---


def test_no_token_and_a_malformed_body_gets_401_not_422(agent: RunningAgent) -> None:
    for path in ("/v1/vms/x/stop", "/v1/vms"):
        answer = httpx.post(f"{agent.url}{path}", content=b"{not json", headers={"Content-Type": "application/json"})
        assert answer.status_code == 401, (path, answer.text)
        assert answer.headers["www-authenticate"] == "Bearer"


def test_an_anonymous_body_is_never_read(agent: RunningAgent) -> None:
    """A 1 GB Content-Length with no body sent: the 401 comes at once, the agent does not wait for the body."""
    began = time.monotonic()
    head = "POST /v1/vms/x/stop HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n"
    answer = raw_request(agent.port, head, timeout=5)
    assert status_of(answer) == 401
    assert time.monotonic() - began < 5


def test_a_body_over_max_body_bytes_gets_413(agent: RunningAgent) -> None:
    with agent.http() as http:
        answer = http.post("/v1/vms", content=b"x" * (2 * MIB), headers={"Content-Type": "application/json"})
        assert answer.status_code == 413, answer.text
        assert answer.json()["code"] == "payload_too_large"
        assert "max_body_bytes (1048576)" in answer.json()["message"]
        assert http.get("/v1/vms").status_code == 200


def test_a_chunked_body_over_max_body_bytes_gets_413_while_it_streams(agent: RunningAgent) -> None:
    """No Content-Length to check up front: the limit is counted as the chunks arrive."""
    head = (
        f"POST /v1/vms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {agent.token}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
    )
    assert status_of(raw_request(agent.port, head, chunked(b"x" * (MIB + 1), 65536))) == 413
    assert status_of(raw_request(agent.port, head, chunked(b"[]", 1))) == 422  # under the limit: read as usual


def test_max_body_bytes_is_configurable(config: HostConfig, engine: Any) -> None:
    with RunningAgent(replace(config, max_body_bytes=100)) as agent, agent.http() as http:
        assert http.post("/v1/vms/x/stop", json={"force": True, "pad": "x" * 100}).status_code == 413
        assert http.post("/v1/vms/x/stop", json={}).status_code == 404


# --- 3. Read-only tokens ---


@pytest.fixture
def viewer(agent: RunningAgent, config: HostConfig) -> Iterator[httpx.Client]:
    token = create_token(config.data_dir, "viewer", read_only=True)
    with httpx.Client(base_url=agent.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        yield client


def test_a_read_only_token_reads(viewer: httpx.Client) -> None:
    for path in ("/v1/vms", "/v1/host", "/v1/operations", "/metrics", "/openapi.json"):
        assert viewer.get(path).status_code == 200, path
    assert viewer.get("/v1/vms/nothing-here").status_code == 404


def test_a_read_only_token_gets_403_on_every_action_and_write(viewer: httpx.Client) -> None:
    for method, path in (
        ("POST", "/v1/vms/x/start"),
        ("POST", "/v1/vms/x/stop"),
        ("POST", "/v1/vms"),
        ("PATCH", "/v1/vms/x"),
        ("DELETE", "/v1/vms/x"),
        ("POST", "/host/echo"),
    ):
        answer = viewer.request(method, path, json={})
        assert answer.status_code == 403, (method, path, answer.text)
        assert answer.json()["code"] == "forbidden"


def test_a_read_only_token_gets_no_console_websocket(agent: RunningAgent, viewer: httpx.Client) -> None:
    token = viewer.headers["authorization"].removeprefix("Bearer ")
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        websockets.sync.client.connect(f"ws://127.0.0.1:{agent.port}/v1/vms/x/console?token={token}")
    assert refused.value.response.status_code == 403
    with pytest.raises(websockets.exceptions.InvalidStatus) as anonymous:
        websockets.sync.client.connect(f"ws://127.0.0.1:{agent.port}/v1/vms/x/console")
    assert anonymous.value.response.status_code == 401


# --- 4. Plugin listeners ---


def listener_plugin(config: HostConfig, port: int) -> Plugins:
    router = APIRouter()

    @router.post("/ex/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    @router.get("/ex/status")
    def status() -> dict[str, str]:
        return {"status": "ok"}

    listeners = lambda self, agent: [Listener(port, router)]  # noqa: E731
    plugin = type("Listening", (VmhostPlugin,), {"name": "listening", "listeners": listeners})()
    return Plugins.check([("listening", "test", plugin)], config)


def test_a_plugin_listener_applies_the_agents_token_rules(config: HostConfig, engine: Any) -> None:
    port = free_port()
    with RunningAgent(config, listener_plugin(config, port)) as agent:
        url = f"http://127.0.0.1:{port}"
        assert httpx.post(f"{url}/ex/echo", content=b"{not json").status_code == 401
        assert httpx.get(f"{url}/ex/status", headers={"Authorization": "Bearer nope"}).status_code == 401
        admin = {"Authorization": f"Bearer {agent.token}"}
        assert httpx.post(f"{url}/ex/echo", content=b"abc", headers=admin).json() == {"bytes": 3}
        assert httpx.post(f"{url}/ex/echo", content=b"x" * (2 * MIB), headers=admin).status_code == 413
        viewer = {"Authorization": f"Bearer {create_token(config.data_dir, 'viewer', read_only=True)}"}
        assert httpx.get(f"{url}/ex/status", headers=viewer).status_code == 200
        assert httpx.post(f"{url}/ex/echo", content=b"abc", headers=viewer).status_code == 403
