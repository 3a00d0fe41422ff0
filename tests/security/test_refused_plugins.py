"""A refused plugin contributes nothing, and a failing one is refused instead of keeping the agent down: a plugin
whose router(), dialect_router(), listeners() or cli() raises is refused with the reason, and one refused for a
route clash loses its hooks, its /ext routes, its listener and its spec block too (the engine got its hooks
before the routes were mounted)."""

import socket
from typing import Any

import httpx
import pytest
from fastapi import APIRouter
from pydantic import BaseModel

from tests.integration.running_agent import RunningAgent, free_port
from vmhost.config import HostConfig
from vmhost.plugins import Listener, Plugins, VmhostPlugin
from vmhost.spec import extensions


class Block(BaseModel):
    size: int = 1


def broken(method: str) -> Any:
    def fail(self: VmhostPlugin, *_args: Any) -> None:
        raise RuntimeError(f"{method} is broken")

    return fail


def recording_plugin(name: str, calls: list[str], **methods: Any) -> VmhostPlugin:
    """A plugin with lifecycle and render hooks that record every call, an /ext route and a spec block."""
    ext = APIRouter()
    ext.add_api_route("/ping", lambda: {"pong": True}, methods=["GET"])
    attributes = {
        "name": name,
        "spec_model": Block,
        "before_create": lambda self, ctx: calls.append("before_create"),
        "after_create": lambda self, ctx: calls.append("after_create"),
        "render": lambda self, spec, domain: calls.append("render"),
        "router": lambda self, agent: ext,
        **methods,
    }
    return type(name.title().replace("-", ""), (VmhostPlugin,), attributes)()


def loaded(config: HostConfig, plugin: VmhostPlugin) -> Plugins:
    return Plugins.check([(plugin.name, "test", plugin)], config)


def status_of(plugins: Plugins, name: str) -> tuple[str, str]:
    (status,) = [s for s in plugins.statuses if s.name == name]
    return status.state, status.reason


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def assert_contributes_nothing(agent: RunningAgent, name: str, calls: list[str], guest_spec, vm_name) -> None:
    with agent.http() as http:
        assert http.get("/healthz").status_code == 200, "the agent started"
        assert http.get(f"/ext/{name}/ping").status_code == 404, "no /ext routes"
        vm = vm_name(f"{name}-vm")
        assert http.post("/v1/vms", json=guest_spec(vm), params={"wait": "true"}).status_code == 200
        assert calls == [], "no lifecycle or render hook ran"
        block = http.post("/v1/vms", json=guest_spec(vm_name(f"{name}-blk"), extensions={name: {"size": 2}}))
        assert block.status_code == 422, "its spec block is unknown"


@pytest.mark.parametrize("method", ["router", "dialect_router", "listeners"])
def test_plugin_failing_while_being_set_up_is_refused_and_the_agent_starts(config, engine, guest_spec, vm_name, method):
    calls: list[str] = []
    name = f"failing-{method.replace('_', '-')}"
    with extensions.only({}):
        plugins = loaded(config, recording_plugin(name, calls, **{method: broken(method)}))
        with RunningAgent(config, plugins) as agent:
            state, reason = status_of(plugins, name)
            assert state == "refused"
            assert f"{method} is broken" in reason
            assert_contributes_nothing(agent, name, calls, guest_spec, vm_name)


def test_plugin_refused_for_a_route_clash_contributes_no_hooks_routes_or_listener(config, engine, guest_spec, vm_name):
    calls: list[str] = []
    clashing = APIRouter()
    clashing.add_api_route("/healthz", lambda: {"status": "mine"}, methods=["GET"])
    port = free_port()
    own = APIRouter()
    own.add_api_route("/own", lambda: {}, methods=["GET"])
    plugin = recording_plugin(
        "clash",
        calls,
        dialect_router=lambda self, agent: clashing,
        listeners=lambda self, agent: [Listener(port, own)],
    )
    with extensions.only({}):
        plugins = loaded(config, plugin)
        with RunningAgent(config, plugins) as agent:
            assert status_of(plugins, "clash") == ("refused", "its dialect routes /healthz are already served")
            assert httpx.get(f"{agent.url}/healthz").json() == {"status": "ok"}
            assert not listening(port), "its listener is not served"
            assert_contributes_nothing(agent, "clash", calls, guest_spec, vm_name)


def test_plugin_whose_cli_raises_is_refused_with_the_reason_wherever_plugins_load():
    calls: list[str] = []
    with extensions.only({}):
        plugins = loaded(HostConfig(), recording_plugin("bad-cli", calls, cli=broken("cli")))
        assert status_of(plugins, "bad-cli") == ("refused", "it failed while being set up: RuntimeError: cli is broken")
        assert plugins.cli_groups() == []
        assert plugins.enabled == []
        assert "bad-cli" not in extensions.registered()
