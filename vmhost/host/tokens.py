"""The agent's bearer tokens on disk: managed locally (`vmhost token`, as root), read by the agent and the CLI.

The admin token lives in data_dir/api-token (mode 0600, in clear: root's CLI reads it). Further tokens (admin or
read-only) live in data_dir/api-tokens.json (mode 0600) as the SHA-256 of a 256-bit random token, never in clear.
No web framework here: the CLI reads its token without the HTTP server (vmhost/api/auth.py decides requests).
"""

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vmhost.errors import VmhostError
from vmhost.host.files import atomic_write

TOKEN_FILE = "api-token"
TOKENS_FILE = "api-tokens.json"
LOCK_FILE = "api-tokens.lock"
MIN_TOKEN_LENGTH = 32
ADMIN = "admin"
NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


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
