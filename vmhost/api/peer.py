"""The other agent of a migration, over HTTPS: engine/peer.py's `Peer`, as the source's engine calls it.

Agents trust each other with a bearer token per peer (config `peer_token_files`, URL -> file, "*" for any other
peer) and the peer's TLS certificate, checked against `peer_ca_file` or the system's CAs. Plain HTTP is refused
except to a loopback address: the offer carries the VM's spec with its secrets. Errors name the peer's URL and
what it answered, never the token. No answer (refused, lost, timed out) and 5xx answers are PeerUnreachable,
which the engine retries where a migration cannot do without the call.

This module uses httpx only (no web framework): the CLI's local mode checks destinations and shapes evacuation
results with it exactly as the agent's routes (api/migration.py) do.
"""

import ipaddress
import ssl
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast, get_args
from urllib.parse import urlsplit

import httpx

from vmhost.config import HostConfig
from vmhost.engine.evacuate import Evacuated
from vmhost.engine.peer import IncomingOffer, IncomingStatus, IncomingTicket
from vmhost.errors import Conflict, HostResourceError, NotFound, PeerUnreachable, Unsupported, VmhostError

INCOMING = "/v1/migrations/incoming"
TIMEOUT = httpx.Timeout(connect=10.0, read=120.0, write=60.0, pool=10.0)
"""A prepare makes placeholders and runs plugins' activation hooks, a finish resumes the VM: minutes, not hours.
Each read or write of an upload has its own 60/120 s, however long the whole upload takes."""
CHUNK = 1 << 20
"""Bytes read from a disk file per chunk of an upload."""
STATUSES = frozenset(get_args(IncomingStatus))
ANY_PEER = "*"
KINDS: dict[str, type[VmhostError]] = {"not_found": NotFound, "conflict": Conflict, "host_resource": HostResourceError}
"""The peer's error codes (api/errors.py error_body) raised again as the types they name; others: VmhostError."""


class HttpPeer:
    """One destination agent. The connection (and its TLS session) is kept for the calls of a migration."""

    def __init__(self, url: str, token: str, verify: ssl.SSLContext | bool = True, timeout: httpx.Timeout = TIMEOUT):
        self.url = agent_url(url)
        self._http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, verify=verify, timeout=timeout
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "HttpPeer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def prepare(self, offer: IncomingOffer) -> IncomingTicket:
        body = self._call("POST", INCOMING, "the prepare", json=offer.model_dump(mode="json"))
        try:
            return IncomingTicket.model_validate(body)
        except ValueError as exc:
            raise VmhostError(f"the agent at {self.url} answered the prepare with no ticket", str(exc)) from None

    def upload_disk(self, migration_id: str, target: str, source: Path) -> None:
        """Streamed a chunk at a time with its length declared, so the peer can refuse an oversized file at once."""
        try:
            size = source.stat().st_size
        except OSError as exc:
            raise VmhostError(f"cannot read disk {target} ({source}) to copy it to {self.url}", str(exc)) from None
        self._call(
            "PUT",
            f"{INCOMING}/{migration_id}/disks/{target}",
            f"the copy of disk {target}",
            content=_chunks(source),
            headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
        )

    def finish(self, migration_id: str) -> None:
        self._call("POST", f"{INCOMING}/{migration_id}/finish", "the finish")

    def abort(self, migration_id: str) -> None:
        """Idempotent: a peer that has nothing of this migration (404) has nothing to drop."""
        try:
            self._call("DELETE", f"{INCOMING}/{migration_id}", "the abort")
        except NotFound:
            return

    def status(self, migration_id: str) -> IncomingStatus:
        body = self._call("GET", f"{INCOMING}/{migration_id}", "the status question")
        status = body.get("status") if isinstance(body, dict) else None
        if status not in STATUSES:
            raise VmhostError(f"the agent at {self.url} answered the status question with {status!r}")
        return cast(IncomingStatus, status)

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            if _certificate_refused(exc):
                raise VmhostError(
                    f"the certificate of the agent at {self.url} is not trusted: set peer_ca_file to the CA that "
                    "signed it",
                    _reason(exc),
                ) from None
            raise PeerUnreachable(f"the agent at {self.url} did not answer {what}", _reason(exc)) from None
        except httpx.TransportError as exc:
            raise PeerUnreachable(f"the agent at {self.url} did not answer {what}", _reason(exc)) from None
        body = _json(response)
        if response.status_code < 400:
            return body
        raise _refusal(self.url, what, response.status_code, body, response.text)


def peer_for(config: HostConfig, url: str) -> HttpPeer:
    """The client of the agent at `url`, with this host's token for it and the CA its certificate is checked
    against. A missing token, or a token file that cannot be read, is refused here, before anything moves."""
    url = agent_url(url)
    return HttpPeer(url, peer_token(config, url), verify=_verify(config))


def peers(config: HostConfig) -> Callable[[str], HttpPeer]:
    """The engine's peer factory (engine/core.py `Core.peers`): recovery rebuilds a migration's peer by URL."""
    return lambda url: peer_for(config, url)


def reachable(config: HostConfig, urls: Sequence[str]) -> list[str]:
    """Each agent URL as the engine will use it, once this host has its token (and the CA file loads): refused
    now, before an operation starts, rather than as a failed migration."""
    checked = []
    for url in urls:
        peer_for(config, url).close()
        checked.append(agent_url(url))
    return checked


def evacuation_view(results: Sequence[Evacuated]) -> dict[str, Any]:
    """engine.evacuate's results as JSON (the evacuate operation's result, the CLI's --json): each VM, counts."""
    vms = [{"vm": r.vm, "to": r.to, "ok": r.ok, "error": r.error or None} for r in results]
    migrated = sum(1 for vm in vms if vm["ok"])
    return {"vms": vms, "migrated": migrated, "failed": len(vms) - migrated}


def agent_url(url: str) -> str:
    """An agent's base URL, without a trailing slash: https, or http to a loopback address only."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError:
        host, parts = None, None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise VmhostError(f"{url!r} is not an agent URL (https://HOST:PORT)")
    if parts.path.strip("/") or parts.query or parts.fragment or parts.username:
        raise VmhostError(f"{url!r} is not an agent URL: name only https://HOST:PORT, without a path")
    if parts.scheme == "http" and not is_loopback(host):
        raise VmhostError(
            f"{url}: migrations send the VM's spec with its secrets, so other agents are reached over https only"
        )
    return f"{parts.scheme}://{parts.netloc}"


def peer_token(config: HostConfig, url: str) -> str:
    """The token this agent sends to `url`: its own entry in peer_token_files, else the "*" entry."""
    files = {_key(key): path for key, path in config.peer_token_files.items() if key != ANY_PEER}
    path = files.get(_key(url)) or config.peer_token_files.get(ANY_PEER)
    if path is None:
        raise VmhostError(
            f"no token for the agent at {url}: set peer_token_files in the config "
            f'("{url}" = "/path/to/token", or "*" for any agent)'
        )
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise VmhostError(
            f"peer_token_files: cannot read the token file {path} for the agent at {url}", exc.strerror or str(exc)
        ) from None
    if not token:
        raise VmhostError(f"peer_token_files: the token file {path} for the agent at {url} is empty")
    return token


def _key(url: str) -> str:
    """Config keys and requested URLs compare without case in scheme and host, and without a trailing slash."""
    parts = urlsplit(url.strip().rstrip("/"))
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def _verify(config: HostConfig) -> ssl.SSLContext | bool:
    if config.peer_ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(config.peer_ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise VmhostError(f"peer_ca_file: cannot load the CA bundle {config.peer_ca_file}", str(exc)) from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _chunks(source: Path) -> Iterator[bytes]:
    with source.open("rb") as file:
        while chunk := file.read(CHUNK):
            yield chunk


def _json(response: httpx.Response) -> Any:
    if not response.headers.get("content-type", "").startswith("application/json"):
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _refusal(url: str, what: str, status: int, body: Any, text: str) -> VmhostError:
    """The peer's own error, as the type its code names, with its message and the peer's URL."""
    known = isinstance(body, dict) and "message" in body
    message = str(body["message"]) if known else text.strip()[:300] or "no reason given"
    details = body.get("details") if known else None
    detail = _detail(details)
    said = f"the agent at {url} refused {what} ({status}): {message}"
    if status in (401, 403):
        return VmhostError(said, "check this host's peer_token_files entry for it and that agent's tokens")
    if status == 501 and isinstance(details, dict):
        return Unsupported(str(details.get("driver")), str(details.get("capability")), f"{said}; {details.get('hint')}")
    if status >= 500:
        return PeerUnreachable(said, detail)
    kind = KINDS.get(str(body.get("code")), VmhostError) if known else VmhostError
    return kind(said, detail)


def _detail(details: Any) -> str | None:
    """The peer's details as one line: each problem with its path, or its text."""
    if isinstance(details, list):
        return "; ".join(f"{d.get('path')}: {d.get('message')}" if isinstance(d, dict) else str(d) for d in details)
    return details if isinstance(details, str) and details else None


def _certificate_refused(exc: httpx.ConnectError) -> bool:
    """A TLS verification failure is no outage: retrying it would only wait."""
    cause: BaseException | None = exc
    seen: set[int] = set()
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)


def _reason(exc: httpx.TransportError) -> str:
    """What went wrong on the wire (never a header, so never the token)."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
