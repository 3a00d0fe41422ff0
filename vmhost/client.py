"""HTTP client of a vmhost agent; raises the same exceptions the local engine does."""

import contextlib
import json
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
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
IMPORT_PROGRESS = re.compile(r"(\d+)/(\d+|\?) bytes")
"""An image import operation's progress: `importing NAME: DONE/TOTAL bytes`."""
IMPORT_POLL = 0.25


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

    def validate(self, document: Any) -> str:
        result: dict[str, Any] = self._call("POST", "/v1/validate", json=document)
        return str(result["name"])

    def list_rows(self, filters: dict[str, str], sort: str | None, fields: list[str]) -> list[dict[str, Any]]:
        """One request: the agent filters, sorts and picks the fields (from its cached listing)."""
        params = {**filters, **({"sort": sort} if sort else {}), **({"fields": ",".join(fields)} if fields else {})}
        rows: list[dict[str, Any]] = self._call("GET", "/v1/vms", params=params)
        return rows

    def get(self, name: str) -> dict[str, Any]:
        view: dict[str, Any] = self._call("GET", f"/v1/vms/{name}")
        return view

    def host(self) -> dict[str, Any]:
        report: dict[str, Any] = self._call("GET", "/v1/host")
        return report

    def shutdown_host(self, timeout: float | None) -> dict[str, Any]:
        result: dict[str, Any] = self._operation("POST", "/v1/host/shutdown", json={"timeout": timeout})
        return result

    def restore_progress(self) -> dict[str, Any]:
        view: dict[str, Any] = self._call("GET", "/v1/host/restore")
        return view

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

    def attach_disk(self, name: str, disk: dict[str, Any]) -> str:
        result: dict[str, Any] = self._operation("POST", f"/v1/vms/{name}/disks", json=disk)
        return str(result["target"])

    def detach_disk(self, name: str, target: str) -> None:
        self._operation("POST", f"/v1/vms/{name}/disks/detach", json={"target": target})

    def pause(self, name: str) -> None:
        self._operation("POST", f"/v1/vms/{name}/pause")

    def resume(self, name: str) -> None:
        self._operation("POST", f"/v1/vms/{name}/resume")

    def delete(self, name: str) -> None:
        self._operation("DELETE", f"/v1/vms/{name}")

    def update(self, name: str, patch: dict[str, Any], live: bool = False, dry_run: bool = False) -> dict[str, Any]:
        """The plan: answered at once for a dry run or nothing to change, else the finished operation's."""
        params = {"wait": "true", "live": str(live).lower(), "dry_run": str(dry_run).lower()}
        body: dict[str, Any] = self._call("PATCH", f"/v1/vms/{name}", json=patch, params=params)
        plan: dict[str, Any] = body["result"]["plan"] if "result" in body else body
        return plan

    def import_image(self, request: dict[str, Any], progress: Callable[[int, int | None], None]) -> dict[str, Any]:
        """POST the import, then poll the operation, feeding its `D/T bytes` progress to `progress`."""
        operation = self._call("POST", "/v1/images", json=request)
        while operation["state"] in ("pending", "running"):
            found = IMPORT_PROGRESS.search(operation.get("progress") or "")
            if found:
                progress(int(found[1]), int(found[2]) if found[2] != "?" else None)
            time.sleep(IMPORT_POLL)
            operation = self._call("GET", f"/v1/operations/{operation['id']}")
        if operation.get("error"):
            raise error_from_body(operation["error"])
        result: dict[str, Any] = operation["result"]
        return result

    def list_images(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._call("GET", "/v1/images")
        return rows

    def get_image(self, name: str) -> dict[str, Any]:
        view: dict[str, Any] = self._call("GET", f"/v1/images/{name}")
        return view

    def delete_image(self, name: str) -> None:
        self._call("DELETE", f"/v1/images/{name}")

    def pull_image(self, reference: str, name: str | None, progress: Callable[[str], None]) -> dict[str, Any]:
        """POST the pull, then follow the operation, handing each new progress line (skopeo's) to `progress`."""
        return self._follow(
            self._call("POST", "/v1/images/pull", json={"reference": reference, "name": name}), progress
        )

    def migrate(self, name: str, request: dict[str, Any], progress: Callable[[str], None]) -> dict[str, Any]:
        """POST the migration (`request`: to and the MigrationRequest fields), then poll its operation, handing
        each new progress line to `progress`; polled, not waited on, since a migration may outlast a wait."""
        return self._follow(self._call("POST", f"/v1/vms/{name}/migrate", json=request), progress)

    def evacuate(self, request: dict[str, Any], progress: Callable[[str], None]) -> dict[str, Any]:
        return self._follow(self._call("POST", "/v1/host/evacuate", json=request), progress)

    def _follow(self, operation: dict[str, Any], progress: Callable[[str], None]) -> dict[str, Any]:
        """Poll an operation to its end, handing each new progress line to `progress`; its result, or its error."""
        shown = ""
        while operation["state"] in ("pending", "running"):
            if operation.get("progress") and operation["progress"] != shown:
                shown = operation["progress"]
                progress(shown)
            time.sleep(IMPORT_POLL)
            operation = self._call("GET", f"/v1/operations/{operation['id']}")
        if operation.get("error"):
            raise error_from_body(operation["error"])
        if operation.get("progress") and operation["progress"] != shown:
            progress(operation["progress"])  # the last line ("pulled …"), also when no poll saw it running
        result: dict[str, Any] = operation["result"]
        return result

    def create_snapshot(self, name: str, snapshot: str, *, disk_only: bool, quiesce: bool) -> dict[str, Any]:
        body = {"name": snapshot, "disk_only": disk_only, "quiesce": quiesce}
        result: dict[str, Any] = self._operation("POST", f"/v1/vms/{name}/snapshots", json=body)
        return result

    def list_snapshots(self, name: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._call("GET", f"/v1/vms/{name}/snapshots")
        return rows

    def revert_snapshot(self, name: str, snapshot: str) -> dict[str, Any]:
        result: dict[str, Any] = self._operation("POST", f"/v1/vms/{name}/snapshots/{snapshot}/revert")
        return result

    def delete_snapshot(self, name: str, snapshot: str) -> None:
        self._operation("DELETE", f"/v1/vms/{name}/snapshots/{snapshot}")

    def fleet_apply(self, spec: dict[str, Any], host: str | None, state: str) -> dict[str, Any]:
        """The fleet's desired state for one VM (any agent of the fleet writes it); `changed` false: it was so."""
        body = {"spec": spec, "host": host, "state": state}
        applied: dict[str, Any] = self._call("POST", "/v1/fleet/vms", json=body)
        return applied

    def fleet_list(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._call("GET", "/v1/fleet/vms")
        return rows

    def fleet_get(self, vm: str) -> dict[str, Any]:
        view: dict[str, Any] = self._call("GET", f"/v1/fleet/vms/{vm}")
        return view

    def fleet_delete(self, vm: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("DELETE", f"/v1/fleet/vms/{vm}")
        return result

    def fleet_hosts(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._call("GET", "/v1/fleet/hosts")
        return rows

    def fleet_drain(self, host: str, wait: bool) -> dict[str, Any]:
        """Cordon the host and give its VMs other hosts; with wait, answered once none is left moving off it."""
        params = {"wait": str(wait).lower()}
        result: dict[str, Any] = self._call("POST", f"/v1/fleet/hosts/{host}/drain", params=params)
        return result

    def fleet_uncordon(self, host: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/v1/fleet/hosts/{host}/uncordon")
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
        except httpx.ConnectError as exc:
            raise Unavailable(
                f"no agent answers at {self.url}, so there are no events to follow: start one with `vmhost serve` "
                "or name one with --agent URL",
                str(exc),
            ) from None
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
        except InvalidStatus as exc:
            raise _refusal(exc, f"cannot open the console of {name} at {self.url}") from None
        except (OSError, ConnectionClosed) as exc:
            raise VmhostError(f"cannot open the console of {name} at {self.url}", str(exc)) from None
        return WebsocketConsole(connection, stack)


def _refusal(exc: InvalidStatus, fallback: str) -> Exception:
    """The agent refuses a console handshake with its usual error body (e.g. 409 "x is not running")."""
    try:
        body = json.loads(exc.response.body or b"")
    except ValueError:
        body = None
    if isinstance(body, dict) and "message" in body:
        return error_from_body(body)
    return VmhostError(fallback, f"HTTP {exc.response.status_code}")


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
