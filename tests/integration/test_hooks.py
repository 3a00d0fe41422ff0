"""Plugins' hooks on a real VM: pre-hooks that refuse roll the operation back, post-hooks are reported, every
error names the plugin, and the agent keeps serving."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter
from lxml import etree

from tests.integration.running_agent import RunningAgent
from vmhost.config import HostConfig
from vmhost.drivers.base import DomainState
from vmhost.engine import Engine
from vmhost.engine.hooks import HookContext, HookFailed, PostHookFailed
from vmhost.errors import RenderHookError
from vmhost.plugins import Plugins, VmhostPlugin
from vmhost.plugins.host import build_engine
from vmhost.spec import extensions

PRE = ["before_create", "start_paused", "before_stop", "before_delete"]
POST = ["after_create", "after_start", "after_stop", "after_delete"]


def boom(method: str) -> Any:
    def hook(self: VmhostPlugin, *args: Any) -> None:
        raise RuntimeError(f"{method} exploded")

    return hook


def plugins_of(config: HostConfig, **methods: Any) -> Plugins:
    plugin = type("Exploding", (VmhostPlugin,), {"name": "exploding", **methods})()
    return Plugins.check([("exploding", "test", plugin)], config)


@pytest.fixture
def hooked(config: HostConfig, libvirt_conn) -> Iterator[Any]:
    """An engine factory with the given plugin methods; every VM it made is deleted without hooks."""
    engines: list[Engine] = []

    def make(**methods: Any) -> Engine:
        engine = build_engine(config, plugins_of(config, **methods))
        engines.append(engine)
        return engine

    with extensions.only({}):
        yield make
    for engine in engines:
        engine.hooks.clear()
        for record in engine.store.list_vms():
            engine.delete(record.name)


def nothing_left(engine: Engine, name: str, libvirt_conn) -> None:
    assert engine.store.get_vm(name) is None
    assert name not in [d.name() for d in libvirt_conn.listAllDomains()]
    vms = engine.config.data_dir / "vms"
    assert not (vms.is_dir() and list(vms.iterdir()))


def test_start_paused_hook_runs_while_the_domain_is_paused(hooked, guest_spec, vm_name):
    name = vm_name("paused-hook")
    seen: list[tuple[str, DomainState, Path]] = []

    def record(self: VmhostPlugin, ctx: HookContext) -> None:
        seen.append((ctx.spec.name, ctx.driver.state(ctx.spec.name), ctx.vm_dir))

    engine = hooked(start_paused=record)
    engine.create(guest_spec(name), start=True)
    assert seen == [(name, DomainState.PAUSED, engine.config.data_dir / "vms" / engine.record(name).uuid)]
    assert engine.driver.state(name) == DomainState.RUNNING


def test_refusing_before_create_leaves_nothing(hooked, guest_spec, vm_name, libvirt_conn):
    name = vm_name("pre-create")
    engine = hooked(before_create=boom("before_create"))
    with pytest.raises(
        HookFailed, match="plugin exploding failed in before-create: RuntimeError: before_create exploded"
    ):
        engine.create(guest_spec(name, disks=[{"source": {"type": "new", "size": "16MiB"}}]), start=True)
    nothing_left(engine, name, libvirt_conn)


def test_refusing_start_paused_rolls_the_start_back(hooked, guest_spec, vm_name):
    name = vm_name("pre-start")
    engine = hooked(start_paused=boom("start_paused"))
    engine.create(guest_spec(name))
    with pytest.raises(HookFailed, match="plugin exploding failed in start-paused"):
        engine.start(name)
    assert engine.driver.state(name) == DomainState.SHUTOFF
    view = engine.get(name)
    assert view["state"] == "stopped"
    assert "plugin exploding" in view["state_reason"]


def test_refusing_start_paused_on_create_and_start_leaves_nothing(hooked, guest_spec, vm_name, libvirt_conn):
    name = vm_name("pre-start-create")
    engine = hooked(start_paused=boom("start_paused"))
    with pytest.raises(HookFailed, match="plugin exploding"):
        engine.create(guest_spec(name, disks=[{"source": {"type": "new", "size": "16MiB"}}]), start=True)
    nothing_left(engine, name, libvirt_conn)


def test_refusing_before_stop_keeps_the_vm_running(hooked, guest_spec, vm_name):
    name = vm_name("pre-stop")
    engine = hooked(before_stop=boom("before_stop"))
    engine.create(guest_spec(name), start=True)
    with pytest.raises(HookFailed, match="plugin exploding failed in before-stop"):
        engine.stop(name, force=True)
    assert engine.get(name)["state"] == "running"
    engine.kill(name)  # the emergency stop does not wait on pre-hooks
    assert engine.driver.state(name) == DomainState.SHUTOFF


def test_refusing_before_delete_keeps_the_vm(hooked, guest_spec, vm_name):
    name = vm_name("pre-delete")
    engine = hooked(before_delete=boom("before_delete"))
    engine.create(guest_spec(name))
    with pytest.raises(HookFailed, match="plugin exploding failed in before-delete"):
        engine.delete(name)
    assert engine.get(name)["state"] == "stopped"


@pytest.mark.parametrize("method", POST)
def test_failing_post_hook_is_reported_after_the_operation_is_done(method, hooked, guest_spec, vm_name, libvirt_conn):
    name = vm_name(method.replace("_", "-"))
    engine = hooked(**{method: boom(method)})
    phase = method.replace("_", "-")
    if method in ("after_create", "after_start"):
        with pytest.raises(
            PostHookFailed, match=f"plugin exploding failed in {phase}: RuntimeError: {method} exploded"
        ):
            engine.create(guest_spec(name), start=method == "after_start")
        assert engine.get(name)["state"] == ("running" if method == "after_start" else "stopped")
        return
    engine.create(guest_spec(name), start=True)
    with pytest.raises(PostHookFailed, match=f"plugin exploding failed in {phase}"):
        engine.stop(name, force=True) if method == "after_stop" else engine.delete(name)
    if method == "after_stop":
        assert engine.get(name)["state"] == "stopped"
    else:
        nothing_left(engine, name, libvirt_conn)


def test_render_hook_raising_fails_the_create_naming_the_plugin(hooked, guest_spec, vm_name, libvirt_conn):
    name = vm_name("render-boom")
    engine = hooked(render=boom("render"))
    with pytest.raises(RenderHookError, match="plugin exploding's render hook failed"):
        engine.create(guest_spec(name, disks=[{"source": {"type": "new", "size": "16MiB"}}]))
    nothing_left(engine, name, libvirt_conn)


def test_render_hook_breaking_the_schema_fails_the_create_naming_the_plugin(hooked, guest_spec, vm_name, libvirt_conn):
    name = vm_name("render-bad")

    def sloppy(self: VmhostPlugin, spec: Any, domain: etree._Element) -> None:
        etree.SubElement(domain, "no-such-element")

    engine = hooked(render=sloppy)
    with pytest.raises(RenderHookError, match="plugin exploding's render hook made a domain libvirt's schema rejects"):
        engine.create(guest_spec(name))
    nothing_left(engine, name, libvirt_conn)


def test_agent_keeps_serving_when_a_plugins_hooks_and_routes_fail(config, engine, guest_spec, vm_name):
    """Through the API: the error body names the plugin; the next requests are served as usual."""
    router = APIRouter()

    @router.get("/explode")
    def explode() -> None:
        raise RuntimeError("route exploded")

    plugins = plugins_of(config, start_paused=boom("start_paused"), router=lambda self, agent: router)
    name = vm_name("api-hook")
    with extensions.only({}), RunningAgent(config, plugins) as agent:
        http = httpx.Client(base_url=agent.url, headers={"Authorization": f"Bearer {agent.token}"}, timeout=120)
        refused = http.post("/v1/vms?start=true&wait=true", json=guest_spec(name))
        assert refused.status_code == 409
        assert refused.json()["code"] == "hook_failed"
        assert "plugin exploding failed in start-paused" in refused.json()["message"]
        crashed = http.get("/ext/exploding/explode")
        assert crashed.status_code == 500
        assert http.get("/ext/exploding/explode", headers={"Authorization": ""}).status_code == 401
        assert http.get("/healthz").status_code == 200
        assert http.get("/v1/vms").status_code == 200
