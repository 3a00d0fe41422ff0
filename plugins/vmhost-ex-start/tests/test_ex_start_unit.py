"""The ex-start plugin, installed: its spec block, its command converter, its render hook, its settings."""

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_zstack_convert import example
from vmhost.config import HostConfig
from vmhost.plugins import Plugins
from vmhost.render.libvirt import RenderContext, render_domain, validate_domain_xml
from vmhost.spec import SpecError, extensions, parse_spec
from vmhost_ex_start import ExStartPlugin
from vmhost_ex_start.command import extended_start_spec

SPEC = {"name": "demo", "memory": "64MiB"}
VMHOST = Path(sys.executable).with_name("vmhost")


@pytest.fixture
def plugins(tmp_path: Path) -> Iterator[Plugins]:
    """The installed plugins as the agent finds them (entry points), with their spec blocks registered."""
    with extensions.only({}):
        found = Plugins.discover(HostConfig(data_dir=tmp_path))
        found.register_spec_extensions()
        yield found


def paths(failure: pytest.ExceptionInfo[SpecError]) -> list[str]:
    return [problem.path for problem in failure.value.problems]


def extended(**fields: Any) -> dict[str, Any]:
    return {**copy.deepcopy(example()), **fields}


# ---- the spec block ---------------------------------------------------------------------------------


def test_plugin_is_found_through_its_entry_point(plugins):
    (status,) = [status for status in plugins.statuses if status.name == "ex-start"]
    assert (status.state, status.source) == ("enabled", "vmhost-ex-start 0.1.0")
    assert status.hooks == ["spec", "render", "listeners", "cli"]


def test_watchdog_block_validates_with_the_spec(plugins):
    spec = parse_spec({**SPEC, "extensions": {"ex-start": {"watchdog": {"model": "i6300esb"}}}})
    assert spec.extension("ex-start").watchdog.model_dump() == {"model": "i6300esb", "action": "reset"}


def test_bad_watchdog_errors_name_the_blocks_fields(plugins):
    block = {"watchdog": {"model": "sputnik", "action": "explode", "extra": 1}}
    with pytest.raises(SpecError) as failure:
        parse_spec({**SPEC, "extensions": {"ex-start": block}})
    assert sorted(paths(failure)) == [
        "extensions.ex-start.watchdog.action",
        "extensions.ex-start.watchdog.extra",
        "extensions.ex-start.watchdog.model",
    ]


# ---- the render hook --------------------------------------------------------------------------------


def render(plugins: Plugins, document: dict[str, Any]) -> Any:
    context = RenderContext(accel="tcg", console_log=Path("/tmp/console.log"), hooks=plugins.render_hooks().libvirt)
    return render_domain(parse_spec(document), context)


@pytest.mark.parametrize("model", ["i6300esb", "ib700", "diag288"])
@pytest.mark.parametrize("action", ["reset", "shutdown", "poweroff", "pause", "none", "dump", "inject-nmi"])
def test_render_hook_adds_a_watchdog_libvirts_schema_accepts(plugins, model, action):
    domain = render(plugins, {**SPEC, "extensions": {"ex-start": {"watchdog": {"model": model, "action": action}}}})
    watchdog = domain.find("devices/watchdog")
    assert watchdog.attrib == {"model": model, "action": action}
    assert watchdog.getnext().tag == "memballoon", "libvirt writes the watchdog just before the balloon"
    assert validate_domain_xml(domain) == []


def test_render_hook_leaves_a_spec_without_the_block_alone(plugins):
    assert render(plugins, SPEC).find("devices/watchdog") is None
    assert render(plugins, {**SPEC, "extensions": {"ex-start": {}}}).find("devices/watchdog") is None


# ---- the command ------------------------------------------------------------------------------------


def test_extended_command_maps_watchdog_and_pinning_onto_the_zstack_conversion(plugins):
    cmd = extended(
        cpuNum=2,
        watchdog={"model": "i6300esb", "action": "poweroff"},
        vcpuPinning=[{"vCpu": 0, "pCpuSet": "0-1"}, {"vCpu": 1, "pCpuSet": "2"}],
    )
    document = extended_start_spec(cmd)
    assert document["extensions"] == {"ex-start": {"watchdog": {"model": "i6300esb", "action": "poweroff"}}}
    assert document["cpu"]["pinning"] == [{"vcpu": 0, "host_cpus": "0-1"}, {"vcpu": 1, "host_cpus": "2"}]
    plain = extended_start_spec(example())
    assert {key: value for key, value in document.items() if key not in ("cpu", "extensions")} == {
        key: value for key, value in plain.items() if key != "cpu"
    }
    spec = parse_spec(document)
    assert spec.extension("ex-start").watchdog.action == "poweroff"
    assert [(pin.vcpu, pin.host_cpus) for pin in spec.cpu.pinning] == [(0, "0-1"), (1, "2")]


def test_plain_start_command_is_converted_as_the_core_converts_it():
    assert extended_start_spec(example()) == extended_start_spec(extended())
    assert "extensions" not in extended_start_spec(example())


def test_every_problem_is_reported_by_the_commands_own_field_names():
    cmd = extended(memory="lots", watchdog={"model": "sputnik"}, vcpuPinning=[{"vCpu": "zero", "pCpuSet": "0"}, 7])
    with pytest.raises(SpecError) as failure:
        extended_start_spec(cmd)
    assert paths(failure) == ["memory", "watchdog.model", "vcpuPinning.0.vCpu", "vcpuPinning.1"]


def test_pinning_in_both_the_field_and_the_addon_is_refused():
    cmd = extended(vcpuPinning=[{"vCpu": 0, "pCpuSet": "0"}])
    cmd["addons"]["cpuPinning"] = [{"vCpu": 0, "pCpuSet": "1"}]
    with pytest.raises(SpecError, match=r"vcpuPinning: give either vcpuPinning or addons\.cpuPinning, not both"):
        extended_start_spec(cmd)


def test_command_that_is_not_an_object_is_refused():
    with pytest.raises(SpecError, match="must be a JSON object, got list"):
        extended_start_spec([])  # type: ignore[arg-type]


# ---- settings ---------------------------------------------------------------------------------------


def test_listener_port_defaults_to_7071_and_comes_from_the_config_table():
    assert ExStartPlugin().options.port == 7071
    configured = Plugins.discover(HostConfig(plugins={"ex-start": {"port": 17071}}))
    (plugin,) = [p for p in configured.enabled if p.name == "ex-start"]
    assert isinstance(plugin, ExStartPlugin)
    assert plugin.options.port == 17071


@pytest.mark.parametrize("settings", [{"port": 0}, {"port": "http"}, {"prot": 7071}])
def test_bad_settings_refuse_the_plugin_and_say_why(settings):
    loaded = Plugins.discover(HostConfig(plugins={"ex-start": settings}))
    (status,) = [status for status in loaded.statuses if status.name == "ex-start"]
    assert status.state == "refused"
    assert "its settings were refused" in status.reason
    assert "ex-start" not in [p.name for p in loaded.enabled]


# ---- the command line -------------------------------------------------------------------------------


def vmhost(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real `vmhost` of this environment, on a config of its own."""
    config = tmp_path / "config.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    env = {"VMHOST_CONFIG": str(config), "PATH": "/usr/bin:/bin"}
    return subprocess.run([str(VMHOST), *args], capture_output=True, text=True, env=env, timeout=60, check=False)


def test_vmhost_plugins_lists_it(tmp_path):
    listed = vmhost(tmp_path, "plugins", "--json")
    assert listed.returncode == 0, listed.stderr
    (status,) = [status for status in json.loads(listed.stdout) if status["name"] == "ex-start"]
    assert (status["state"], status["hooks"]) == ("enabled", ["spec", "render", "listeners", "cli"])


def test_convert_command_prints_the_spec_document(tmp_path):
    command = tmp_path / "cmd.json"
    command.write_text(json.dumps(extended(watchdog={"model": "ib700", "action": "pause"})))
    converted = vmhost(tmp_path, "ex-start", "convert", "-f", str(command))
    assert converted.returncode == 0, converted.stderr
    assert json.loads(converted.stdout)["extensions"] == {
        "ex-start": {"watchdog": {"model": "ib700", "action": "pause"}}
    }


def test_convert_command_names_the_fields_it_cannot_map(tmp_path):
    command = tmp_path / "cmd.json"
    command.write_text(json.dumps(extended(watchdog={"model": "sputnik"})))
    refused = vmhost(tmp_path, "ex-start", "convert", "-f", str(command))
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: watchdog.model: Input should be 'i6300esb'")
