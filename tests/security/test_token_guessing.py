"""Guessing tokens is bounded: a source that presented too many wrong tokens lately (bearer header, websocket
?token=, the dashboard's sign-in) is refused, right token or not, until the window moves on; other sources and
loopback callers are not held up, and the table of sources is bounded.

The agent runs on loopback behind a trusted proxy (itself), so X-Forwarded-For gives each request the remote
source it stands for, as a real reverse proxy would."""

from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
import websockets.exceptions
import websockets.sync.client

from tests.integration.running_agent import RunningAgent
from vmhost.api import guesses
from vmhost.api.guesses import WrongTokens
from vmhost.config import HostConfig

pytestmark = pytest.mark.integration
GUESSER, NEIGHBOUR = "203.0.113.7", "203.0.113.8"
WRONG = "x" * 43


@pytest.fixture
def proxied(config: HostConfig) -> Iterator[RunningAgent]:
    with RunningAgent(replace(config, trusted_proxies=("127.0.0.1",))) as running:
        yield running


def get_host(agent: RunningAgent, source: str, token: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": source}
    return httpx.get(f"{agent.url}/v1/host", headers=headers, timeout=30)


def test_a_source_that_guessed_too_often_is_refused_even_the_right_token(proxied: RunningAgent) -> None:
    assert {get_host(proxied, GUESSER, WRONG).status_code for _ in range(guesses.WRONG_TOKENS)} == {401}
    refused = get_host(proxied, GUESSER, proxied.token)
    assert refused.status_code == 429
    assert refused.json()["code"] == "too_many_requests"
    assert GUESSER in refused.json()["message"]
    assert 0 < int(refused.headers["Retry-After"]) <= guesses.WINDOW_SECONDS
    assert get_host(proxied, NEIGHBOUR, proxied.token).status_code == 200, "another source is not held up"


def test_sign_in_and_websocket_guesses_count_against_the_same_source(proxied: RunningAgent) -> None:
    half = guesses.WRONG_TOKENS // 2
    for _ in range(half):
        answer = httpx.post(
            f"{proxied.url}/ui/session", json={"token": WRONG}, headers={"X-Forwarded-For": GUESSER}, timeout=30
        )
        assert answer.status_code == 401
    url = proxied.url.replace("http", "ws", 1) + "/v1/vms/none/console?token=" + WRONG
    for _ in range(guesses.WRONG_TOKENS - half):
        with pytest.raises(websockets.exceptions.InvalidStatus):
            websockets.sync.client.connect(url, additional_headers={"X-Forwarded-For": GUESSER}).close()
    signing_in = httpx.post(
        f"{proxied.url}/ui/session", json={"token": proxied.token}, headers={"X-Forwarded-For": GUESSER}, timeout=30
    )
    assert signing_in.status_code == 429 and "set-cookie" not in signing_in.headers


def test_loopback_callers_are_never_counted(agent: RunningAgent) -> None:
    """A local user must not be able to lock root's CLI out."""
    headers = {"Authorization": f"Bearer {WRONG}"}
    for _ in range(guesses.WRONG_TOKENS + 5):
        assert httpx.get(f"{agent.url}/v1/host", headers=headers, timeout=30).status_code == 401
    with agent.http() as client:
        assert client.get("/v1/host").status_code == 200


def test_the_window_moves_on_and_the_table_of_sources_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(guesses.time, "monotonic", lambda: now[0])
    wrong = WrongTokens(limit=3, window=60, sources=2)
    for _ in range(3):
        wrong.failed("a")
        now[0] += 10
    assert wrong.wait("a") == 30, "the oldest of the 3 is 30 s from leaving the window"
    now[0] += 30
    assert wrong.wait("a") == 0
    wrong.failed("b")
    wrong.failed("c")  # a third source: the one that guessed least recently ("a") is forgotten
    for _ in range(2):
        wrong.failed("a")
    assert wrong.wait("a") == 0, "a forgotten source starts from nothing"
    assert wrong.wait(None) == 0
