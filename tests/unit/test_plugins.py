"""The plugin mechanism as a specification: loading, ordering, versions, config, spec blocks, render hooks."""

from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter
from lxml import etree
from pydantic import BaseModel, ConfigDict, Field

from vmhost.config import HostConfig
from vmhost.errors import RenderHookError
from vmhost.plugins import API_VERSION, Plugins, VmhostPlugin
from vmhost.plugins.manager import compatible
from vmhost.render.libvirt import RenderContext, RenderHook, render_domain
from vmhost.render.oci import render_config
from vmhost.render.vmadm import render_payload
from vmhost.render.xen import XenContext, render_xl_cfg
from vmhost.render.xen.values import XlNumber
from vmhost.spec import SpecError, extensions, parse_spec
from vmhost.spec.schema import spec_json_schema

SPEC = {"name": "demo", "memory": "64MiB"}


class Watchdog(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: str = Field("reset", pattern="^(reset|poweroff)$")


def plugin(name: str, **attributes: Any) -> VmhostPlugin:
    return type(name.title().replace("-", ""), (VmhostPlugin,), {"name": name, **attributes})()


def check(*plugins: VmhostPlugin, config: HostConfig | None = None) -> Plugins:
    return Plugins.check([(p.name, "test", p) for p in plugins], config or HostConfig(data_dir=Path("/tmp")))


@pytest.fixture(autouse=True)
def _no_extensions():
    with extensions.only({}):
        yield


def test_plugins_run_in_priority_order_then_by_name():
    loaded = check(plugin("zeta", priority=10), plugin("alpha", priority=50), plugin("beta", priority=10))
    assert [p.name for p in loaded.enabled] == ["beta", "zeta", "alpha"]


@pytest.mark.parametrize("version", ["2.0", "0.9", f"{API_VERSION.split('.')[0]}.99", "one"])
def test_plugin_for_an_incompatible_api_version_is_refused_with_the_reason(version):
    loaded = check(plugin("old", api_version=version), plugin("fine"))
    assert [p.name for p in loaded.enabled] == ["fine"]
    (status,) = [s for s in loaded.statuses if s.name == "old"]
    assert status.state == "refused"
    assert version in status.reason


def test_same_major_older_minor_is_compatible():
    assert compatible(API_VERSION.split(".")[0] + ".0") is None


def test_config_file_disables_a_plugin_and_passes_settings_to_the_others():
    configured: dict[str, Any] = {}
    greedy = plugin("greedy", configure=lambda self, settings: configured.update(settings))
    config = HostConfig(plugins={"off": {"enabled": False}, "greedy": {"port": 7071}})
    loaded = check(plugin("off"), greedy, config=config)
    assert [p.name for p in loaded.enabled] == ["greedy"]
    assert configured == {"port": 7071}
    assert {s.name: s.state for s in loaded.statuses} == {"off": "disabled", "greedy": "enabled"}


def test_plugin_refusing_its_settings_is_refused_and_the_others_load():
    def refuse(self, settings):
        raise ValueError("port must be a number")

    loaded = check(plugin("picky", configure=refuse), plugin("fine"))
    assert [p.name for p in loaded.enabled] == ["fine"]
    assert "port must be a number" in loaded.statuses[0].reason + loaded.statuses[1].reason


def test_plugin_that_fails_to_import_is_refused_not_fatal():
    loaded = Plugins.check(
        [("broken", "test", ImportError("no module named x")), ("fine", "t", plugin("fine"))], HostConfig()
    )
    assert [p.name for p in loaded.enabled] == ["fine"]
    assert "no module named x" in next(s.reason for s in loaded.statuses if s.name == "broken")


@pytest.mark.parametrize("bad_name", ["Upper", "has space", "x" * 40, ""])
def test_plugin_names_must_be_usable_in_urls_specs_and_commands(bad_name):
    named = type("Named", (VmhostPlugin,), {"name": bad_name})()
    loaded = Plugins.check([(bad_name, "test", named)], HostConfig())
    assert not loaded.enabled
    assert loaded.statuses[0].state == "refused"


def test_second_plugin_with_the_same_name_is_refused():
    loaded = check(plugin("twin", version="1"), plugin("twin", version="2"))
    assert [p.version for p in loaded.enabled] == ["1"]


def test_status_lists_the_hooks_a_plugin_overrides():
    loaded = check(
        plugin(
            "hooks", spec_model=Watchdog, render=lambda self, spec, domain: None, start_paused=lambda self, ctx: None
        )
    )
    assert loaded.statuses[0].hooks == ["spec", "render", "start_paused"]


def test_dialect_routes_on_a_path_already_served_refuse_the_plugin():
    first, second = APIRouter(), APIRouter()
    first.add_api_route("/vm/start", lambda: None, methods=["POST"])
    second.add_api_route("/vm/start", lambda: None, methods=["POST"])
    loaded = check(
        plugin("one", dialect_router=lambda self, agent: first),
        plugin("two", dialect_router=lambda self, agent: second),
    )
    mounts = loaded.routers(agent=None, reserved=["/v1/vms"])  # type: ignore[arg-type]
    assert mounts == [("", first)]
    assert {s.name: s.state for s in loaded.statuses} == {"one": "enabled", "two": "refused"}


def test_plugin_routes_mount_under_ext_and_its_name():
    router = APIRouter()
    loaded = check(plugin("extra", router=lambda self, agent: router))
    assert loaded.routers(agent=None, reserved=[]) == [("/ext/extra", router)]  # type: ignore[arg-type]


# ---- spec blocks ----------------------------------------------------------------------------------


def test_extension_block_validates_with_the_spec_and_errors_name_its_fields():
    check(plugin("watchdog", spec_model=Watchdog)).register_spec_extensions()
    spec = parse_spec({**SPEC, "extensions": {"watchdog": {"action": "poweroff"}}})
    assert spec.extension("watchdog") == Watchdog(action="poweroff")
    with pytest.raises(SpecError) as failure:
        parse_spec({**SPEC, "memory": "1KiB", "extensions": {"watchdog": {"action": "explode", "extra": 1}}})
    paths = [problem.path for problem in failure.value.problems]
    assert paths == ["extensions.watchdog.action", "extensions.watchdog.extra", "memory.size"]


def test_unknown_extension_block_is_an_error_naming_it():
    with pytest.raises(SpecError, match=r"extensions\.nosuch: no enabled plugin provides the extension 'nosuch'"):
        parse_spec({**SPEC, "extensions": {"nosuch": {}}})


def test_disabled_plugins_block_is_unknown():
    check(
        plugin("watchdog", spec_model=Watchdog), config=HostConfig(plugins={"watchdog": {"enabled": False}})
    ).register_spec_extensions()
    with pytest.raises(SpecError, match="no enabled plugin provides"):
        parse_spec({**SPEC, "extensions": {"watchdog": {}}})


def test_extension_block_round_trips_through_the_stored_json():
    check(plugin("watchdog", spec_model=Watchdog)).register_spec_extensions()
    stored = parse_spec({**SPEC, "extensions": {"watchdog": {}}}).model_dump(mode="json")
    assert stored["extensions"] == {"watchdog": {"action": "reset"}}
    assert parse_spec(stored).extension("watchdog").action == "reset"


def test_schema_shows_the_enabled_plugins_blocks_and_nothing_else():
    assert spec_json_schema()["properties"]["extensions"]["properties"] == {}
    check(plugin("watchdog", spec_model=Watchdog)).register_spec_extensions()
    schema = spec_json_schema()["properties"]["extensions"]
    assert schema["properties"]["watchdog"]["properties"]["action"]["pattern"] == "^(reset|poweroff)$"
    assert schema["additionalProperties"] is False


# ---- render hooks -----------------------------------------------------------------------------------


def _context(*hooks: RenderHook) -> RenderContext:
    return RenderContext(accel="tcg", console_log=Path("/tmp/console.log"), hooks=hooks)


def add_watchdog(spec, domain):
    etree.SubElement(domain.find("devices"), "watchdog", model="i6300esb", action="reset")


def test_render_hooks_change_the_domain_in_order():
    def after(spec, domain):
        domain.find("devices/watchdog").set("action", "poweroff")

    domain = render_domain(parse_spec(SPEC), _context(RenderHook("a", add_watchdog), RenderHook("b", after)))
    assert domain.find("devices/watchdog").attrib == {"model": "i6300esb", "action": "poweroff"}


def test_render_hook_making_an_invalid_domain_is_named_with_the_schema_error():
    def bogus(spec, domain):
        etree.SubElement(domain.find("devices"), "watchdog", model="no-such-model")

    with pytest.raises(
        RenderHookError, match="plugin sloppy's render hook made a domain libvirt's schema rejects"
    ) as failure:
        render_domain(parse_spec(SPEC), _context(RenderHook("sloppy", bogus)))
    assert "/domain/devices" in str(failure.value.detail)


def test_render_hook_raising_is_named():
    def boom(spec, domain):
        raise KeyError("cpu")

    with pytest.raises(RenderHookError, match="plugin boom's render hook failed for demo"):
        render_domain(parse_spec(SPEC), _context(RenderHook("boom", boom)))


# ---- render hook points of the other renderers, and refusal where a hook cannot apply ---------------------

CONTAINER = {
    "name": "box",
    "kind": "container",
    "memory": "64MiB",
    "container": {"rootfs": {"type": "directory", "path": "/srv/box"}, "command": ["true"]},
}


def on(vm_driver: str) -> HostConfig:
    return HostConfig(data_dir=Path("/tmp"), vm_driver=vm_driver)  # type: ignore[arg-type]


def tuning(**hooks: Any) -> VmhostPlugin:
    return plugin("tuning", **hooks)


def test_xl_cfg_has_a_hook_point_whose_settings_reach_the_file():
    def grant_frames(self, spec, cfg):
        cfg["max_grant_frames"] = XlNumber(64)

    hooks = check(tuning(render_xl=grant_frames), config=on("xen")).render_hooks()
    assert "max_grant_frames = 64\n" in render_xl_cfg(parse_spec(SPEC), XenContext(hooks=hooks.xl))


def test_vmadm_payload_has_a_hook_point():
    def tag(self, spec, payload):
        payload["tags"] = {"team": "storage"}

    hooks = check(tuning(render_vmadm=tag), config=on("smartos")).render_hooks()
    assert render_payload(parse_spec(SPEC), "bhyve", owner="/data", hooks=hooks.vmadm)["tags"] == {"team": "storage"}


def test_oci_config_has_a_hook_point_on_every_host():
    def env(self, spec, config):
        config["process"]["env"].append("TUNED=1")

    for vm_driver in ("libvirt", "xen", "smartos"):
        hooks = check(tuning(render_oci=env), config=on(vm_driver)).render_hooks()
        assert "TUNED=1" in render_config(parse_spec(CONTAINER), Path("/srv/box"), hooks=hooks.oci)["process"]["env"]


@pytest.mark.parametrize(
    ("hook", "broken_value"),
    [("render_xl", {"Memory": XlNumber(1)}), ("render_xl", {"memory": 512}), ("render_oci", {"x": object()})],
)
def test_a_hook_leaving_a_document_that_cannot_be_written_is_named(hook, broken_value):
    def sloppy(self, spec, document):
        document.update(broken_value)

    hooks = check(plugin("sloppy", **{hook: sloppy}), config=on("xen")).render_hooks()
    with pytest.raises(RenderHookError, match=r"plugin sloppy's .* render hook left the .* of (demo|box) unwritable"):
        if hook == "render_xl":
            render_xl_cfg(parse_spec(SPEC), XenContext(hooks=hooks.xl))
        else:
            render_config(parse_spec(CONTAINER), Path("/srv/box"), hooks=hooks.oci)


def test_a_vmadm_hook_may_not_rewrite_vmhosts_record_in_internal_metadata():
    def forge(self, spec, payload):
        payload["internal_metadata"]["vmhost:owner"] = "/elsewhere"

    hooks = check(plugin("forger", render_vmadm=forge), config=on("smartos")).render_hooks()
    with pytest.raises(RenderHookError, match=r"plugin forger's vmadm payload render hook") as failure:
        render_payload(parse_spec(SPEC), "bhyve", owner="/data", hooks=hooks.vmadm)
    assert "vmhost's record" in str(failure.value.detail)


def test_a_hook_raising_is_named_with_its_renderer():
    def boom(self, spec, cfg):
        raise KeyError("vif")

    hooks = check(plugin("boom", render_xl=boom), config=on("xen")).render_hooks()
    with pytest.raises(RenderHookError, match=r"plugin boom's xl\.cfg render hook failed for demo"):
        render_xl_cfg(parse_spec(SPEC), XenContext(hooks=hooks.xl))


@pytest.mark.parametrize(("vm_driver", "needed"), [("xen", "render_xl"), ("smartos", "render_vmadm")])
def test_a_plugin_whose_render_hook_cannot_apply_on_this_host_is_refused_with_the_reason(vm_driver, needed):
    loaded = check(plugin("watchdog", render=lambda self, spec, domain: None), config=on(vm_driver))
    status = loaded.statuses[0]
    assert status.state == "refused"
    assert status.reason == (
        f"its render hook (render) cannot apply here: this host's {vm_driver} driver renders through {needed}"
    )
    assert loaded.enabled == [] and loaded.render_hooks().libvirt == ()


def test_a_plugin_with_a_hook_for_this_hosts_renderer_loads_and_only_that_hook_applies_here():
    both = plugin("both", render=lambda self, spec, domain: None, render_xl=lambda self, spec, cfg: None)
    for vm_driver in ("libvirt", "xen"):
        assert [p.name for p in check(both, config=on(vm_driver)).enabled] == ["both"]
    assert check(both, config=on("smartos")).statuses[0].state == "refused"
    containers_only = plugin("containers", render_oci=lambda self, spec, config: None)
    assert check(containers_only, config=on("smartos")).statuses[0].state == "enabled"
