"""HTTP client of a vmhost agent; raises the same exceptions the local engine does."""

import contextlib
import json
import queue
import threading
from collections.abc import Iterator
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from vmhost.drivers.base import ConsoleStream
from vmhost.errors import Conflict, HostResourceError, HypervisorError, NotFound, Unavailable, Unsupported, VmhostError
from vmhost.spec import Problem, SpecError

KINDS: dict[str, type[VmhostError]] = {
    kind.code: kind for kind in (NotFound, Conflict, HostResourceError, HypervisorError, Unavailable)
}
"""The codes of the agent's error bodies (vmhost/api/errors.py error_body), raised again as the types they name."""


def error_from_body(body: dict[str, Any]) -> Exception:
    """The agent's {code, message, details} as the same exception types the local engine raises."""
    code, message, details = body.get("code"), body.get("message", "error"), body.get("details")
    if code == "invalid_spec":
        return SpecError([Problem(d["path"], d["message"]) for d in details or []])
    if code == "unsupported" and isinstance(details, dict):
        return Unsupported(str(details.get("driver")), str(details.get("capability")), details.get("hint"))
    return KINDS.get(str(code), VmhostError)(message, details if isinstance(details, str) else None)


class AgentClient:
    """Operations are called with ?wait=true, so each method returns when the agent has finished."""

    def __init__(self, url: str, token: str, verify: bool | str = True):
        self.url = url.rstrip("/")
        self._token = token
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            verify=verify,
            timeout=httpx.Timeout(30.0, read=None),
        )

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise VmhostError(f"cannot reach the agent at {self.url}", str(exc)) from None
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else None
        if response.status_code >= 400:
            if isinstance(body, dict) and "code" in body:
                raise error_from_body(body)
            raise HypervisorError(f"agent answered {response.status_code}", response.text[:500])
        return body if body is not None else response.content

    def _operation(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._call(method, path, params={"wait": "true", **kwargs.pop("params", {})}, **kwargs)["result"]

    def create(self, document: Any, start: bool) -> dict[str, Any]:
        result: dict[str, Any] = self._operation("POST", "/v1/vms", json=document, params={"start": str(start).lower()})
        return result

    def list_rows(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._call("GET", "/v1/vms")
        return rows

    def get(self, name: str) -> dict[str, Any]:
        view: dict[str, Any] = self._call("GET", f"/v1/vms/{name}")
        return view

    def host(self) -> dict[str, Any]:
        report: dict[str, Any] = self._call("GET", "/v1/host")
        return report

    def info(self, name: str) -> dict[str, Any]:
        view: dict[str, Any] = self._call("GET", f"/v1/vms/{name}/info")
        return view

    def start(self, name: str) -> None:
        self._operation("POST", f"/v1/vms/{name}/start")

    def stop(self, name: str, force: bool, timeout: float | None) -> dict[str, Any]:
        result: dict[str, Any] = self._operation(
            "POST", f"/v1/vms/{name}/stop", json={"force": force, "timeout": timeout}
        )
        return result

    def reboot(self, name: str, force: bool) -> None:
        self._operation("POST", f"/v1/vms/{name}/reboot", json={"force": force})

    def kill(self, name: str) -> None:
        self._operation("POST", f"/v1/vms/{name}/kill")

    def delete(self, name: str) -> None:
        self._operation("DELETE", f"/v1/vms/{name}")

    def update(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._operation("PATCH", f"/v1/vms/{name}", json=patch)
        return result

    def events(self, vm: str | None, follow: bool) -> Iterator[dict[str, Any]]:
        """Each state change as a dict, from the agent's recent history and then (with follow) live."""
        params = {"follow": str(follow).lower(), **({"vm": vm} if vm else {})}
        try:
            with self._http.stream("GET", "/v1/events", params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_from_body(response.json())
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        yield json.loads(line.removeprefix("data: "))
        except httpx.HTTPError as exc:
            raise VmhostError(f"lost the event stream of {self.url}", str(exc)) from None

    def console_log(self, name: str) -> bytes:
        data: bytes = self._call("GET", f"/v1/vms/{name}/console/log")
        return data

    def follow_console_log(self, name: str) -> Iterator[bytes]:
        try:
            with self._http.stream(
                "GET", f"/v1/vms/{name}/console/log", params={"follow": "true"}, timeout=None
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_from_body(response.json())
                yield from response.iter_bytes()
        except httpx.HTTPError as exc:
            raise VmhostError(f"lost the console log of {name} from {self.url}", str(exc)) from None

    def open_console(self, name: str) -> ConsoleStream:
        scheme = "wss" if self.url.startswith("https") else "ws"
        address = f"{scheme}{self.url.removeprefix('https').removeprefix('http')}/v1/vms/{name}/console"
        stack = contextlib.ExitStack()
        try:
            connection = stack.enter_context(
                connect(address, additional_headers={"Authorization": f"Bearer {self._token}"})
            )
        except (OSError, InvalidStatus, ConnectionClosed) as exc:
            raise VmhostError(f"cannot open the console of {name} at {self.url}", str(exc)) from None
        return WebsocketConsole(connection, stack)


class WebsocketConsole:
    """ConsoleStream over the agent's console websocket; owns the connection until close()."""

    def __init__(self, connection: ClientConnection, stack: contextlib.ExitStack):
        self._connection = connection
        self._stack = stack
        self._chunks: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        try:
            for message in self._connection:
                self._chunks.put(message if isinstance(message, bytes) else message.encode())
        except ConnectionClosed:
            pass
        self._chunks.put(b"")

    def read(self, timeout: float) -> bytes:
        try:
            data = self._chunks.get(timeout=timeout)
        except queue.Empty:
            return b""
        if not data:
            self._chunks.put(b"")
            raise EOFError("console closed")
        return data

    def write(self, data: bytes) -> None:
        self._connection.send(data)

    def close(self) -> None:
        self._stack.close()
