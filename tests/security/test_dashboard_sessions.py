"""The dashboard's sessions on a real agent: a token is exchanged for a cookie that is HttpOnly and SameSite=Strict,
changes need the session's CSRF token, websockets need this agent's Origin, a revoked token ends its sessions,
and the number of sessions is bounded. The page itself sends no inline script and cannot be framed."""

from collections.abc import Iterator

import httpx
import pytest
import websockets.exceptions
import websockets.sync.client

from tests.integration.running_agent import RunningAgent
from vmhost.api.principal import Principal
from vmhost.api.sessions import Sessions
from vmhost.config import HostConfig
from vmhost.host.tokens import create_token, revoke_token

pytestmark = pytest.mark.integration


def signed_in(agent: RunningAgent, token: str) -> tuple[httpx.Client, str]:
    """An anonymous client holding a session cookie; and the session's CSRF token."""
    client = httpx.Client(base_url=agent.url, timeout=30)
    answer = client.post("/ui/session", json={"token": token})
    assert answer.status_code == 200, answer.text
    return client, answer.json()["csrf"]


@pytest.fixture
def session(agent: RunningAgent) -> Iterator[tuple[httpx.Client, str]]:
    client, csrf = signed_in(agent, agent.token)
    try:
        yield client, csrf
    finally:
        client.close()


def test_the_cookie_is_httponly_strict_and_never_the_token(agent: RunningAgent) -> None:
    answer = httpx.post(f"{agent.url}/ui/session", json={"token": agent.token})
    cookie = answer.headers["set-cookie"]
    assert "vmhost_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie, cookie
    assert agent.token not in cookie and agent.token not in answer.text
    assert answer.json()["principal"] == "admin" and answer.json()["read_only"] is False


def test_a_wrong_token_or_a_form_post_gets_no_session(agent: RunningAgent) -> None:
    wrong = httpx.post(f"{agent.url}/ui/session", json={"token": "x" * 40})
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    form = httpx.post(
        f"{agent.url}/ui/session", content=f'{{"token": "{agent.token}"}}', headers={"Content-Type": "text/plain"}
    )
    assert form.status_code == 415 and "set-cookie" not in form.headers


def test_a_session_reads_but_changes_only_with_its_csrf_token(session: tuple[httpx.Client, str]) -> None:
    client, csrf = session
    assert client.get("/v1/vms").status_code == 200
    refused = client.post("/v1/validate", json={"name": "x"})
    assert refused.status_code == 403 and "X-CSRF-Token" in refused.json()["message"]
    wrong = client.post("/v1/validate", json={"name": "x"}, headers={"X-CSRF-Token": "guess"})
    assert wrong.status_code == 403
    allowed = client.post("/v1/validate", json={"name": "csrf-ok", "memory": "64MiB"}, headers={"X-CSRF-Token": csrf})
    assert allowed.status_code in (200, 422), allowed.text  # past auth: the spec itself is judged


def test_a_session_websocket_from_another_origin_is_refused(
    agent: RunningAgent, session: tuple[httpx.Client, str]
) -> None:
    client, _csrf = session
    cookie = f"vmhost_session={client.cookies['vmhost_session']}"
    with pytest.raises(websockets.exceptions.InvalidStatus) as foreign:
        websockets.sync.client.connect(
            f"ws://127.0.0.1:{agent.port}/v1/vms/x/console",
            additional_headers={"Cookie": cookie},
            origin="http://evil.example",  # type: ignore[arg-type]
        )
    assert foreign.value.response.status_code == 403
    with pytest.raises(websockets.exceptions.InvalidStatus) as own:  # past auth: the VM does not exist
        websockets.sync.client.connect(
            f"ws://127.0.0.1:{agent.port}/v1/vms/x/console",
            additional_headers={"Cookie": cookie},
            origin=f"http://127.0.0.1:{agent.port}",  # type: ignore[arg-type]
        )
    assert own.value.response.status_code != 403


def test_revoking_the_token_ends_its_sessions(agent: RunningAgent, config: HostConfig) -> None:
    token = create_token(config.data_dir, "ui-revoked", read_only=True)
    client, _csrf = signed_in(agent, token)
    assert client.get("/v1/vms").status_code == 200
    revoke_token(config.data_dir, "ui-revoked")
    ended = client.get("/v1/vms")
    client.close()
    assert ended.status_code == 401 and "revoked" in ended.json()["message"]


def test_a_read_only_session_may_sign_out_and_the_cookie_is_dead_after(agent: RunningAgent, config: HostConfig) -> None:
    token = create_token(config.data_dir, "ui-reader", read_only=True)
    client, csrf = signed_in(agent, token)
    cookie = client.cookies["vmhost_session"]
    assert client.delete("/ui/session").status_code == 403  # the CSRF token is needed to end it too
    assert client.delete("/ui/session", headers={"X-CSRF-Token": csrf}).status_code == 204
    client.close()
    replay = httpx.get(f"{agent.url}/v1/vms", cookies={"vmhost_session": cookie})
    assert replay.status_code == 401


def test_the_page_allows_no_inline_script_and_no_framing(agent: RunningAgent) -> None:
    page = httpx.get(f"{agent.url}/ui/")
    assert page.status_code == 200 and "<script" in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert httpx.get(f"{agent.url}/ui/static/../api-token").status_code == 404
    assert httpx.get(f"{agent.url}/ui/static/app.js").headers["content-type"].startswith("text/javascript")


def test_sessions_are_bounded_the_oldest_unused_ending_first() -> None:
    sessions = Sessions(limit=3)
    opened = [sessions.open(f"digest-{i}", Principal("admin"))[0] for i in range(3)]
    assert sessions.find(opened[0]) is not None  # used: now the most recent
    sessions.open("digest-3", Principal("admin"))
    assert len(sessions) == 3
    assert sessions.find(opened[1]) is None and sessions.find(opened[0]) is not None


def test_an_idle_session_ends() -> None:
    sessions = Sessions(idle=0.0)
    session_id, _ = sessions.open("digest", Principal("admin"))
    assert sessions.find(session_id) is None
