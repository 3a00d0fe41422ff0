"""Bearer tokens, and the decision on every request, made before its body is read.

The admin token lives in data_dir/api-token (mode 0600, in clear: root's CLI reads it). Further tokens (admin or
read-only) live in data_dir/api-tokens.json (mode 0600) as the SHA-256 of a 256-bit random token, never in clear.
The agent re-reads both files when they change, so created, revoked and rotated tokens apply at the next request.
"""

import contextlib
import fcntl
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qs

from fastapi import HTTPException, WebSocketException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vmhost.errors import VmhostError
from vmhost.host.files import atomic_write

TOKEN_FILE = "api-token"
TOKENS_FILE = "api-tokens.json"
LOCK_FILE = "api-tokens.lock"
MIN_TOKEN_LENGTH = 32
ADMIN = "admin"
NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
READ_METHODS = frozenset({"GET", "HEAD"})
OPEN_PATHS = frozenset({"/healthz"})

log = logging.getLogger("vmhost.auth")
T = TypeVar("T")


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a token's name (never the token), or a trusted source."""

    name: str
    read_only: bool = False


def token_path(data_dir: Path) -> Path:
    return data_dir / TOKEN_FILE


def tokens_path(data_dir: Path) -> Path:
    return data_dir / TOKENS_FILE


def new_token() -> str:
    return secrets.token_urlsafe(32)


def digest(token: str) -> str:
    """Plain SHA-256: the tokens are 256-bit random, so a salt or a slow hash would add nothing."""
    return hashlib.sha256(token.encode()).hexdigest()


def ensure_token(data_dir: Path) -> str:
    """Create the admin token on first start (mode 0600, written whole or not at all) and return it.

    An empty or short token file is refused: an empty token would let an empty Authorization header in.
    """
    path = token_path(data_dir)
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
        atomic_write(path, new_token() + "\n")
    token = path.read_text().strip()
    if len(token) < MIN_TOKEN_LENGTH:
        raise VmhostError(f"the agent token in {path} is missing or too short; remove the file to make a new one")
    return token


def read_token(data_dir: Path) -> str | None:
    try:
        return token_path(data_dir).read_text().strip()
    except OSError:
        return None


# --- the token store (used by `vmhost token`, locally, as root) ---


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[list[dict[str, Any]]]:
    """The stored tokens, under an exclusive lock; what the block leaves in the list is written back."""
    if not data_dir.is_dir():
        raise VmhostError(f"data directory {data_dir} does not exist (start the agent once, or check data_dir)")
    try:
        descriptor = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    except PermissionError:
        raise VmhostError(f"cannot write to {data_dir}: token commands run as root on the agent's host") from None
    with os.fdopen(descriptor) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        tokens = _stored(data_dir)
        before = list(tokens)
        yield tokens
        if tokens != before:
            atomic_write(tokens_path(data_dir), json.dumps({"tokens": tokens}, indent=1) + "\n")


def _stored(data_dir: Path) -> list[dict[str, Any]]:
    path = tokens_path(data_dir)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise VmhostError(f"cannot read the token store {path}: {exc}") from None
    tokens = document.get("tokens") if isinstance(document, dict) else None
    if not isinstance(tokens, list):
        raise VmhostError(f"the token store {path} has no `tokens` list")
    return [dict(entry) for entry in tokens if isinstance(entry, dict)]


def create_token(data_dir: Path, name: str, read_only: bool) -> str:
    """Store a new token's hash; the token itself is returned once and kept nowhere."""
    if not NAME.fullmatch(name) or name == ADMIN:
        raise VmhostError(
            f"token name {name!r}: use 1-63 lower-case letters, digits, '.', '_' or '-' (and not {ADMIN!r})"
        )
    token = new_token()
    with _locked(data_dir) as tokens:
        if any(entry.get("name") == name for entry in tokens):
            raise VmhostError(f"a token named {name} exists already (revoke it first)")
        created = datetime.now(UTC).isoformat(timespec="seconds")
        scope = "read-only" if read_only else ADMIN
        tokens.append({"name": name, "scope": scope, "sha256": digest(token), "created": created})
    return token


def revoke_token(data_dir: Path, name: str) -> None:
    if name == ADMIN:
        raise VmhostError("the admin token cannot be revoked; `vmhost token rotate` replaces it")
    with _locked(data_dir) as tokens:
        kept = [entry for entry in tokens if entry.get("name") != name]
        if len(kept) == len(tokens):
            raise VmhostError(f"no token named {name}")
        tokens[:] = kept


def list_tokens(data_dir: Path) -> list[dict[str, str]]:
    """Names, scopes and creation times (never a token or its hash); the admin token file first."""
    path = token_path(data_dir)
    rows = []
    if path.exists():
        changed = datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")
        rows.append({"name": ADMIN, "scope": ADMIN, "created": changed, "where": str(path)})
    with _locked(data_dir) as tokens:
        stored = list(tokens)
    where = str(tokens_path(data_dir))
    rows += [
        {"name": str(e.get("name")), "scope": str(e.get("scope")), "created": str(e.get("created")), "where": where}
        for e in stored
    ]
    return rows


def rotate_admin_token(data_dir: Path) -> Path:
    """A new admin token in the token file; the old one stops working at the agent's next request."""
    with _locked(data_dir):
        atomic_write(token_path(data_dir), new_token() + "\n")
    return token_path(data_dir)


# --- the agent's side ---


class _Watched(Generic[T]):
    """A file's parsed content, read again only when the file changes (inode, mtime or size)."""

    def __init__(self, path: Path, parse: Callable[[str | None], T]):
        self._path, self._parse = path, parse
        self._lock = threading.Lock()
        self._key: tuple[int, int, int] | None = None
        self._value = parse(None)

    def get(self) -> T:
        try:
            stat = os.stat(self._path)
            key: tuple[int, int, int] | None = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            key = None
        with self._lock:
            if key != self._key:
                try:
                    text = self._path.read_text() if key is not None else None
                except OSError:
                    text = None
                self._key, self._value = key, self._parse(text)
            return self._value


def _admin_token(text: str | None) -> str | None:
    token = (text or "").strip()
    if len(token) < MIN_TOKEN_LENGTH:
        if text is not None:
            log.error("the admin token file is too short; the admin token is refused until it is fixed")
        return None
    return token


def _named_tokens(text: str | None) -> Mapping[str, Principal]:
    """sha256 -> Principal; a broken store admits none of its tokens (the admin token still works)."""
    if text is None:
        return {}
    try:
        entries = json.loads(text)["tokens"]
        return {str(e["sha256"]): Principal(str(e["name"]), e["scope"] != ADMIN) for e in entries}
    except (ValueError, KeyError, TypeError):
        log.error("the token store is unreadable; its tokens are refused until it is fixed")
        return {}


def peer_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The peer as an address, IPv4-mapped IPv6 (::ffff:a.b.c.d) read as the IPv4 address it is."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TokenAuth:
    """Which principal a connection is; `trusted_sources` may call trusted paths (a dialect's) without a token.

    The client address is the socket peer: uvicorn rewrites it from X-Forwarded-For only when the operator
    names `trusted_proxies`, and then only for connections from those proxies.
    """

    def __init__(self, data_dir: Path, trusted_sources: tuple[str, ...] = ()):
        self._admin = _Watched(token_path(data_dir), _admin_token)
        self._named = _Watched(tokens_path(data_dir), _named_tokens)
        self._trusted = [ipaddress.ip_network(source, strict=False) for source in trusted_sources]

    def token_principal(self, presented: str) -> Principal | None:
        admin = self._admin.get()
        if admin is not None and hmac.compare_digest(presented.encode(), admin.encode()):
            return Principal(ADMIN)
        return self._named.get().get(digest(presented)) if presented else None

    def decide(self, scope: Scope, trusted_path: bool) -> Principal | None:
        """Bearer header; websockets may pass ?token= instead, since browsers cannot set their headers."""
        if trusted_path and self._trusted:
            client = scope.get("client")
            address = peer_address(str(client[0])) if client else None
            if address is not None and any(address in network for network in self._trusted):
                return Principal(f"trusted source {address}")
        headers = dict(scope.get("headers") or [])
        scheme, _, presented = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" and scope["type"] == "websocket":
            scheme, presented = "bearer", _query_token(scope)
        return self.token_principal(presented.strip()) if scheme.lower() == "bearer" else None

    async def __call__(self, connection: HTTPConnection) -> None:
        """FastAPI dependency: reuses the middleware's decision, and makes it where a router runs without one."""
        self._require(connection, trusted_path=False)

    async def trusted_or_token(self, connection: HTTPConnection) -> None:
        self._require(connection, trusted_path=True)

    def _require(self, connection: HTTPConnection, trusted_path: bool) -> None:
        scope = connection.scope
        principal = scope.get("state", {}).get("principal") or self.decide(scope, trusted_path)
        if principal is None or (principal.read_only and not _reads(scope)):
            status, reason = (401, UNAUTHORIZED) if principal is None else (403, READ_ONLY)
            if scope["type"] == "websocket":
                raise WebSocketException(code=1008, reason=reason)
            raise HTTPException(status_code=status, detail=reason, headers=_challenge(status))


UNAUTHORIZED = "missing or wrong bearer token"
READ_ONLY = "this token is read-only: it may only read (GET)"


def _query_token(scope: Scope) -> str:
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    return parse_qs(query).get("token", [""])[0]


def _reads(scope: Scope) -> bool:
    """Read-only tokens may GET and HEAD; websockets (the console takes keystrokes) are refused to them."""
    return scope["type"] == "http" and scope["method"] in READ_METHODS


def _challenge(status: int) -> dict[str, str]:
    return {"WWW-Authenticate": "Bearer"} if status == 401 else {}


class AuthMiddleware:
    """Authenticates every request before any route, dependency or body parser runs, and bounds bodies.

    `trusted_path(scope)` says where trusted sources need no token. The principal is left in
    scope["state"]["principal"] (request.state.principal) for routes and the request log.
    """

    def __init__(self, app: ASGIApp, auth: TokenAuth, trusted_path: Callable[[Scope], bool], max_body_bytes: int):
        self.app, self.auth, self.trusted_path, self.max_body_bytes = app, auth, trusted_path, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if not (scope["type"] == "http" and scope["path"] in OPEN_PATHS):
            principal = self.auth.decide(scope, self.trusted_path(scope))
            if principal is None or (principal.read_only and not _reads(scope)):
                status = 401 if principal is None else 403
                await _refuse(scope, send, status, UNAUTHORIZED if principal is None else READ_ONLY)
                return
            scope.setdefault("state", {})["principal"] = principal
        if scope["type"] == "http":
            if _content_length(scope) > self.max_body_bytes:
                await _refuse(scope, send, 413, self._too_large())
                return
            receive = self._bounded(receive)
        await self.app(scope, receive, send)

    def _too_large(self) -> str:
        return f"the request body is larger than max_body_bytes ({self.max_body_bytes})"

    def _bounded(self, receive: Receive) -> Receive:
        """Counts the body as it streams (chunked bodies have no Content-Length) and stops it at the limit."""
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise HTTPException(status_code=413, detail=self._too_large())
            return message

        return bounded


def _content_length(scope: Scope) -> int:
    for name, value in scope.get("headers") or []:
        if name == b"content-length":
            with contextlib.suppress(ValueError):
                return int(value)
    return 0


CODES = {401: "unauthorized", 403: "forbidden", 413: "payload_too_large"}


async def _refuse(scope: Scope, send: Send, status: int, message: str) -> None:
    """The API's error body; a websocket gets it as the handshake's answer where the server can send one."""
    body = json.dumps({"code": CODES[status], "message": message, "details": None}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in _challenge(status).items()]
    if scope["type"] == "websocket":
        if "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1008, "reason": message})
            return
        kind = "websocket.http.response"
    else:
        kind = "http.response"
    await send({"type": f"{kind}.start", "status": status, "headers": headers})
    await send({"type": f"{kind}.body", "body": body})
