"""Bearer tokens: the decision on every request, made before its body is read.

The token files (data_dir/api-token, data_dir/api-tokens.json) are vmhost/host/tokens.py's. The agent re-reads
both when they change, so created, revoked and rotated tokens apply at the next request.
"""

import contextlib
import hmac
import ipaddress
import json
import logging
import math
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar
from urllib.parse import parse_qs

from fastapi import HTTPException, WebSocketException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vmhost.api.guesses import WrongTokens
from vmhost.api.principal import Principal
from vmhost.api.sessions import COOKIE, CSRF_HEADER, Session, Sessions
from vmhost.host.tokens import ADMIN, MIN_TOKEN_LENGTH, digest, token_path, tokens_path

READ_METHODS = frozenset({"GET", "HEAD"})
OPEN_PATHS = frozenset({"/healthz"})
DASHBOARD = "/ui"
"""The dashboard's pages, files and sign-in are open; its routes that need a session check it themselves."""

log = logging.getLogger("vmhost.auth")
T = TypeVar("T")


@dataclass(frozen=True)
class Refusal:
    """Why a connection may not go on: the status and the message the caller gets."""

    status: int
    message: str
    retry_after: int = 0
    """Seconds, for a 429."""

    def headers(self) -> dict[str, str]:
        if self.status == 401:
            return {"WWW-Authenticate": "Bearer"}
        return {"Retry-After": str(self.retry_after)} if self.status == 429 else {}


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
        self.sessions = Sessions()
        self.wrong_tokens = WrongTokens()

    def token_principal(self, presented: str) -> Principal | None:
        admin = self._admin.get()
        if admin is not None and hmac.compare_digest(presented.encode(), admin.encode()):
            return Principal(ADMIN)
        return self._named.get().get(digest(presented)) if presented else None

    def digest_principal(self, token_digest: str) -> Principal | None:
        """The principal of a token known by its digest only (a session's): None once revoked or rotated."""
        admin = self._admin.get()
        if admin is not None and hmac.compare_digest(digest(admin).encode(), token_digest.encode()):
            return Principal(ADMIN)
        return self._named.get().get(token_digest)

    def judge(self, scope: Scope, trusted_path: bool) -> Principal | Refusal:
        """The whole decision: a bearer token (or trusted source), else a dashboard session; then the
        read-only rule. A source that guessed too many wrong tokens lately is refused first (guesses.py)."""
        refused = self.guessed_too_often(scope)
        if refused is not None:
            return refused
        principal: Principal | Refusal | None = self.decide(scope, trusted_path)
        if principal is None:
            checked = self.session(scope)
            principal = checked if isinstance(checked, Refusal) else checked[1]
        if isinstance(principal, Principal) and principal.read_only and not _reads(scope):
            return Refusal(403, READ_ONLY)
        return principal

    def session(self, scope: Scope) -> tuple[Session, Principal] | Refusal:
        """The dashboard session the cookie names, and who it acts as: live, its token still valid, the CSRF
        header on a change, this agent's Origin on a websocket (the read-only rule is judge's)."""
        session_id = _cookie(scope, COOKIE)
        if not session_id:
            return Refusal(401, UNAUTHORIZED)
        session = self.sessions.find(session_id)
        if session is None:
            return Refusal(401, "the dashboard session has ended: sign in again")
        principal = self.digest_principal(session.token_digest)
        if principal is None:
            self.sessions.close(session_id)
            return Refusal(401, "the session's token was revoked or rotated: sign in again")
        if scope["type"] == "websocket":
            if not same_origin(scope):
                return Refusal(403, "a websocket opened with a session must come from this agent's pages (Origin)")
        elif scope["method"] not in READ_METHODS and not session.csrf_matches(_header(scope, CSRF_HEADER)):
            return Refusal(403, "missing or wrong X-CSRF-Token header for this session")
        return session, principal

    def guessed_too_often(self, scope: Scope) -> Refusal | None:
        source = counted_source(scope)
        wait = math.ceil(self.wrong_tokens.wait(source))
        if wait <= 0:
            return None
        return Refusal(429, f"too many wrong tokens from {source}: try again in {wait} s", retry_after=wait)

    def presented(self, scope: Scope, token: str) -> Principal | None:
        """The principal of a token a caller presented; a wrong one counts against its source."""
        principal = self.token_principal(token)
        if principal is None and token:
            self.wrong_tokens.failed(counted_source(scope))
        return principal

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
        return self.presented(scope, presented.strip()) if scheme.lower() == "bearer" else None

    async def __call__(self, connection: HTTPConnection) -> None:
        """FastAPI dependency: reuses the middleware's decision, and makes it where a router runs without one."""
        self._require(connection, trusted_path=False)

    async def trusted_or_token(self, connection: HTTPConnection) -> None:
        self._require(connection, trusted_path=True)

    def _require(self, connection: HTTPConnection, trusted_path: bool) -> None:
        scope = connection.scope
        decided = scope.get("state", {}).get("principal") or self.judge(scope, trusted_path)
        if isinstance(decided, Refusal):
            if scope["type"] == "websocket":
                raise WebSocketException(code=1008, reason=decided.message)
            raise HTTPException(status_code=decided.status, detail=decided.message, headers=decided.headers())


UNAUTHORIZED = "missing or wrong bearer token"
READ_ONLY = "this token is read-only: it may only read (GET)"


def _query_token(scope: Scope) -> str:
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    return parse_qs(query).get("token", [""])[0]


def _header(scope: Scope, name: str) -> str:
    wanted = name.encode()
    return next((v.decode("latin-1") for k, v in scope.get("headers") or [] if k == wanted), "")


def _cookie(scope: Scope, name: str) -> str:
    for part in _header(scope, "cookie").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return ""


def same_origin(scope: Scope) -> bool:
    """The Origin header names this very host and port (what a browser sends from the agent's own pages)."""
    origin, host = _header(scope, "origin"), _header(scope, "host")
    return bool(origin and host) and origin.partition("://")[2].rstrip("/") == host


def _reads(scope: Scope) -> bool:
    """Read-only tokens may GET and HEAD; websockets (the console takes keystrokes) are refused to them."""
    return scope["type"] == "http" and scope["method"] in READ_METHODS


def counted_source(scope: Scope) -> str | None:
    """Who a wrong token counts against (guesses.py): the peer's IP address, unless it is loopback."""
    client = scope.get("client")
    address = peer_address(str(client[0])) if client else None
    return None if address is None or address.is_loopback else str(address)


class AuthMiddleware:
    """Authenticates every request before any route, dependency or body parser runs, and bounds bodies.

    `trusted_path(scope)` says where trusted sources need no token; `streamed(scope)` which routes bound their
    own bodies instead of max_body_bytes (a migration's disk upload). The principal is left in
    scope["state"]["principal"] (request.state.principal) for routes and the request log.
    """

    def __init__(
        self,
        app: ASGIApp,
        auth: TokenAuth,
        trusted_path: Callable[[Scope], bool],
        max_body_bytes: int,
        streamed: Callable[[Scope], bool] = lambda _scope: False,
    ):
        self.app, self.auth, self.trusted_path, self.max_body_bytes = app, auth, trusted_path, max_body_bytes
        self.streamed = streamed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if not _open(scope):
            decided = self.auth.judge(scope, self.trusted_path(scope))
            if isinstance(decided, Refusal):
                await _refuse(scope, send, decided)
                return
            scope.setdefault("state", {})["principal"] = decided
        if scope["type"] == "http" and not self.streamed(scope):
            if _content_length(scope) > self.max_body_bytes:
                await _refuse(scope, send, Refusal(413, self._too_large()))
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


def _open(scope: Scope) -> bool:
    path = str(scope["path"])
    return scope["type"] == "http" and (path in OPEN_PATHS or path == DASHBOARD or path.startswith(DASHBOARD + "/"))


def _content_length(scope: Scope) -> int:
    for name, value in scope.get("headers") or []:
        if name == b"content-length":
            with contextlib.suppress(ValueError):
                return int(value)
    return 0


CODES = {401: "unauthorized", 403: "forbidden", 413: "payload_too_large", 429: "too_many_requests"}


async def _refuse(scope: Scope, send: Send, refusal: Refusal) -> None:
    """The API's error body; a websocket gets it as the handshake's answer where the server can send one."""
    status, message = refusal.status, refusal.message
    body = json.dumps({"code": CODES[status], "message": message, "details": None}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in refusal.headers().items()]
    if scope["type"] == "websocket":
        if "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1008, "reason": message})
            return
        kind = "websocket.http.response"
    else:
        kind = "http.response"
    await send({"type": f"{kind}.start", "status": status, "headers": headers})
    await send({"type": f"{kind}.body", "body": body})
