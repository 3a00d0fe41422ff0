"""Bearer-token auth: one token per agent, generated into the data directory, readable by root only."""

import hmac
import ipaddress
import os
import secrets
from pathlib import Path

from fastapi import HTTPException, WebSocketException
from starlette.requests import HTTPConnection

from vmhost.errors import VmhostError

TOKEN_FILE = "api-token"


def token_path(data_dir: Path) -> Path:
    return data_dir / TOKEN_FILE


MIN_TOKEN_LENGTH = 32


def ensure_token(data_dir: Path) -> str:
    """Create the token on first start (mode 0600, written whole or not at all) and return it.

    An empty or short token file is refused: an empty token would let an empty Authorization header in.
    """
    path = token_path(data_dir)
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
        temporary = path.with_suffix(".new")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    token = path.read_text().strip()
    if len(token) < MIN_TOKEN_LENGTH:
        raise VmhostError(f"the agent token in {path} is missing or too short; remove the file to make a new one")
    return token


def read_token(data_dir: Path) -> str | None:
    try:
        return token_path(data_dir).read_text().strip()
    except OSError:
        return None


class TokenAuth:
    """FastAPI dependency; `trusted_sources` may call without a token (for planes that cannot send one)."""

    def __init__(self, token: str, trusted_sources: tuple[str, ...] = ()):
        self._token = token
        self._trusted = [ipaddress.ip_network(source, strict=False) for source in trusted_sources]

    def __call__(self, connection: HTTPConnection) -> None:
        """Bearer header; websockets may pass ?token= instead, since browsers cannot set their headers."""
        scheme, _, presented = connection.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" and connection.scope["type"] == "websocket":
            scheme, presented = "bearer", connection.query_params.get("token", "")
        if scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), self._token.encode()):
            return
        if connection.scope["type"] == "websocket":
            raise WebSocketException(code=1008, reason="missing or wrong token")
        raise HTTPException(
            status_code=401, detail="missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
        )

    def trusted_or_token(self, request: HTTPConnection) -> None:
        if self._trusted and request.client is not None:
            try:
                address = ipaddress.ip_address(request.client.host)
            except ValueError:
                address = None
            if address is not None and any(address in network for network in self._trusted):
                return
        self(request)
