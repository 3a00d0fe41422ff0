"""Tokens beyond the one admin token: `vmhost token create|list|revoke|rotate` on the data dir, picked up by a
running agent at its next request; stored hashed in a root-only file, shown once, never logged."""

import hashlib
import json
import logging
import stat
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import httpx
import pytest

from tests.integration.running_agent import RunningAgent
from vmhost.host.tokens import TOKEN_FILE, TOKENS_FILE, create_token, read_token

Cli = Callable[..., CompletedProcess[str]]


def created(cli: Cli, *args: str) -> str:
    result = cli("token", "create", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def as_token(agent: RunningAgent, token: str) -> httpx.Client:
    return httpx.Client(base_url=agent.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_a_created_token_works_at_once_and_a_revoked_one_gets_401(agent: RunningAgent, cli: Cli) -> None:
    token = created(cli, "--name", "ci")
    with as_token(agent, token) as http:
        assert http.get("/v1/vms").status_code == 200
        assert http.post("/v1/vms/no-such-vm/start").status_code == 404  # an admin token: the action is allowed
        revoked = cli("token", "revoke", "ci")
        assert revoked.returncode == 0, revoked.stderr
        refused = http.get("/v1/vms")
        assert refused.status_code == 401
        assert refused.json()["code"] == "unauthorized"
    with agent.http() as admin:
        assert admin.get("/v1/vms").status_code == 200


def test_a_read_only_token_from_the_cli_reads_and_is_refused_actions(agent: RunningAgent, cli: Cli) -> None:
    with as_token(agent, created(cli, "--read-only", "--name", "dashboard")) as http:
        assert http.get("/v1/vms").status_code == 200
        started = http.post("/v1/vms/no-such-vm/start")
        assert started.status_code == 403
        assert "read-only" in started.json()["message"]


def test_rotate_replaces_the_admin_token_without_a_restart(agent: RunningAgent, cli: Cli, data_dir: Path) -> None:
    old = agent.token
    rotated = cli("token", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    new = read_token(data_dir)
    assert new and new != old and len(new) >= 32
    assert old not in rotated.stdout + rotated.stderr
    assert stat.S_IMODE((data_dir / TOKEN_FILE).stat().st_mode) == 0o600
    with as_token(agent, old) as stale, as_token(agent, new) as fresh:
        assert stale.get("/v1/vms").status_code == 401
        assert fresh.get("/v1/vms").status_code == 200


def test_the_store_is_root_only_and_holds_hashes_not_tokens(agent: RunningAgent, cli: Cli, data_dir: Path) -> None:
    token = created(cli, "--read-only", "--name", "viewer")
    store = data_dir / TOKENS_FILE
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    text = store.read_text()
    assert token not in text
    assert hashlib.sha256(token.encode()).hexdigest() in text
    listed = cli("token", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row["scope"] for row in json.loads(listed.stdout)}
    assert rows == {"admin": "admin", "viewer": "read-only"}
    assert token not in listed.stdout
    assert hashlib.sha256(token.encode()).hexdigest() not in listed.stdout
    assert agent.token not in listed.stdout


def test_token_names_are_checked(cli: Cli, agent: RunningAgent) -> None:
    created(cli, "--name", "ci")
    for args, problem in (
        (("create", "--name", "ci"), "a token named ci exists already"),
        (("create", "--name", "Bad Name"), "token name 'Bad Name'"),
        (("create", "--name", "admin"), "token name 'admin'"),
        (("revoke", "nobody"), "no token named nobody"),
        (("revoke", "admin"), "the admin token cannot be revoked"),
    ):
        result = cli("token", *args)
        assert result.returncode == 1, args
        assert problem in result.stderr, (args, result.stderr)


def test_tokens_are_never_logged(agent: RunningAgent, data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    viewer = create_token(data_dir, "viewer", read_only=True)
    for token in (agent.token, viewer, "a-wrong-token-" + "x" * 32):
        with as_token(agent, token) as http:
            http.get("/v1/vms")
            http.post("/v1/vms/x/start")
            http.get("/v1/vms", params={"token": token})
    # vmhost's own loggers: `vmhost serve` leaves uvicorn's access log off (pytest's capture re-attaches it)
    records = [record for record in caplog.records if record.name.startswith("vmhost")]
    logged = "\n".join(f"{record.getMessage()} {vars(record)}" for record in records)
    assert "'principal': 'viewer'" in logged  # the request log names who called...
    for token in (agent.token, viewer):
        assert token not in logged  # ...never with what
        assert hashlib.sha256(token.encode()).hexdigest() not in logged
