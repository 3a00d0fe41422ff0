"""Browser sessions of the dashboard: an agent token is exchanged once for a session cookie, because a page must
not keep a root-equivalent token where its scripts can read it.

The cookie is HttpOnly, SameSite=Strict and Secure under TLS. Every change made with it must also carry the
session's CSRF token in a header (a page of another site can make the browser send the cookie, never the header),
and a websocket opened with it must come from a page of this agent (its Origin). A session holds its token's
digest, never the token, and is checked against the token files on every request: revoking or rotating the token
ends its sessions. Sessions live in memory (an agent restart signs everyone out), bounded in number and age.
"""

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from vmhost.api.principal import Principal

COOKIE = "vmhost_session"
CSRF_HEADER = "x-csrf-token"
MAX_SESSIONS = 1024
"""Beyond this the least recently used session is ended: sign-ins cannot grow the agent's memory."""
IDLE_SECONDS = 8 * 3600.0
LIFETIME_SECONDS = 24 * 3600.0


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass
class Session:
    token_digest: str
    principal: Principal
    csrf: str
    created: float
    seen: float

    def csrf_matches(self, presented: str) -> bool:
        return hmac.compare_digest(presented.encode(), self.csrf.encode())


class Sessions:
    def __init__(
        self, limit: int = MAX_SESSIONS, idle: float = IDLE_SECONDS, lifetime: float = LIFETIME_SECONDS
    ) -> None:
        self._limit, self._idle, self._lifetime = limit, idle, lifetime
        self._lock = threading.Lock()
        self._by_id: OrderedDict[str, Session] = OrderedDict()
        """sha256 of the session id -> session, least recently used first (the id itself is not kept)."""

    def open(self, token_digest: str, principal: Principal) -> tuple[str, Session]:
        """A new session: its id (for the cookie, returned once) and the session."""
        session_id = secrets.token_urlsafe(32)
        now = time.monotonic()
        session = Session(token_digest, principal, secrets.token_urlsafe(32), now, now)
        with self._lock:
            self._by_id[_digest(session_id)] = session
            while len(self._by_id) > self._limit:
                self._by_id.popitem(last=False)
        return session_id, session

    def find(self, session_id: str) -> Session | None:
        """The live session of this id (its idle clock restarted), or None: unknown, idle too long or too old."""
        key = _digest(session_id)
        now = time.monotonic()
        with self._lock:
            session = self._by_id.get(key)
            if session is None:
                return None
            if now - session.seen > self._idle or now - session.created > self._lifetime:
                del self._by_id[key]
                return None
            session.seen = now
            self._by_id.move_to_end(key)
            return session

    def close(self, session_id: str) -> None:
        with self._lock:
            self._by_id.pop(_digest(session_id), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_id)
