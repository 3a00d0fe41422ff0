"""The nic-tuning plugin, installed: the ethtool commands it builds, its reading of `ethtool -k`, its spec
block and settings, and its hook on a driver that is not a real one."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmhost.config import HostConfig
from vmhost.drivers.base import DomainState
from vmhost.engine.hooks import HookContext, Phase
from vmhost.errors import HostResourceError, Unavailable
from vmhost.plugins import Plugins
from vmhost.spec import SpecError, extensions, parse_spec
from vmhost_nic_tuning import NicTuningPlugin
from vmhost_nic_tuning.ethtool import disable_argv, listed_name, parse_features, show_argv
from vmhost_nic_tuning.spec import NicTuningBlock
from vmhost_nic_tuning.tuning import RECORD_FILE, tune

SPEC = {"name": "demo", "memory": "64MiB"}

LISTING = """Features for vnet3:
rx-checksumming: off [fixed]
tx-checksumming: off
\ttx-checksum-ip-generic: off [requested on]
tcp-segmentation-offload: off
\ttx-tcp-segmentation: off [requested on]
generic-segmentation-offload: on
generic-receive-offload: on
large-receive-offload: off [fixed]
"""


@pytest.fixture
def plugins(tmp_path: Path) -> Iterator[Plugins]:
    with extensions.only({}):
        found = Plugins.discover(HostConfig(data_dir=tmp_path))
        found.register_spec_extensions()
        yield found


# ---- ethtool ----------------------------------------------------------------------------------------


def test_one_ethtool_call_turns_every_feature_off():
    assert disable_argv("ethtool", "vnet3", ["gso", "gro", "tx-udp_tnl-segmentation"]) == [
        "ethtool",
        "-K",
        "vnet3",
        "gso",
        "off",
        "gro",
        "off",
        "tx-udp_tnl-segmentation",
        "off",
    ]
    assert show_argv("/usr/sbin/ethtool", "vnet3") == ["/usr/sbin/ethtool", "-k", "vnet3"]


def test_listing_is_read_with_its_notes_dropped():
    features = parse_features(LISTING)
    assert features["generic-segmentation-offload"] is True
    assert features["rx-checksumming"] is False
    assert features["tx-checksum-ip-generic"] is False, "'[requested on]' is not on"
    assert "Features for vnet3" not in features


def test_short_feature_names_are_looked_up_under_their_listed_names():
    assert [listed_name(name) for name in ("gso", "gro", "tso", "tx-tcp-segmentation")] == [
        "generic-segmentation-offload",
        "generic-receive-offload",
        "tcp-segmentation-offload",
        "tx-tcp-segmentation",
    ]


@pytest.mark.parametrize("device", ["-K", "", "x" * 16, "vnet0;reboot"])
def test_a_device_name_that_is_not_one_never_reaches_ethtool(device):
    with pytest.raises(HostResourceError, match="is not a network device name"):
        tune("/nonexistent/ethtool", device, ["gso"])


def test_failing_ethtool_is_an_error_naming_the_command():
    with pytest.raises(HostResourceError, match=r"^/bin/false -k vnet0 failed \(exit 1\)"):
        tune("/bin/false", "vnet0", ["gso"])


def test_missing_ethtool_is_unavailable_and_says_what_to_install():
    with pytest.raises(Unavailable, match="is not installed \\(Debian package ethtool\\)"):
        tune("/nonexistent/ethtool", "vnet0", ["gso"])


# ---- spec block and settings ------------------------------------------------------------------------


def test_plugin_is_found_through_its_entry_point(plugins):
    (status,) = [status for status in plugins.statuses if status.name == "nic-tuning"]
    assert (status.state, status.source) == ("enabled", "vmhost-nic-tuning 0.1.0")
    assert status.hooks == ["spec", "start_paused", "router"]


def test_block_validates_with_the_spec(plugins):
    spec = parse_spec({**SPEC, "extensions": {"nic-tuning": {"features": ["tso", "gso"]}}})
    assert spec.extension("nic-tuning") == NicTuningBlock(enabled=True, features=["tso", "gso"])


@pytest.mark.parametrize(
    ("block", "path"),
    [
        ({"features": []}, "extensions.nic-tuning.features"),
        ({"features": ["gso off; reboot"]}, "extensions.nic-tuning.features.0"),
        ({"enabled": "sometimes"}, "extensions.nic-tuning.enabled"),
        ({"feature": ["gso"]}, "extensions.nic-tuning.feature"),
    ],
)
def test_bad_block_errors_name_the_field(plugins, block, path):
    with pytest.raises(SpecError) as failure:
        parse_spec({**SPEC, "extensions": {"nic-tuning": block}})
    assert [problem.path for problem in failure.value.problems] == [path]


def test_vm_block_overrides_the_host_settings():
    plugin = NicTuningPlugin()
    plugin.configure({"features": ["gro"]})
    assert plugin.features_for(None) == ["gro"]
    assert plugin.features_for(NicTuningBlock()) == ["gro"]
    assert plugin.features_for(NicTuningBlock(features=["tso", "gso"])) == ["tso", "gso"]
    assert NicTuningPlugin().features_for(None) == ["gso", "gro"]


@pytest.mark.parametrize("settings", [{"features": []}, {"features": ["-rf"]}, {"ethtool": "eth tool"}, {"x": 1}])
def test_bad_settings_refuse_the_plugin_and_say_why(settings):
    loaded = Plugins.discover(HostConfig(plugins={"nic-tuning": settings}))
    (status,) = [status for status in loaded.statuses if status.name == "nic-tuning"]
    assert status.state == "refused"
    assert "its settings were refused" in status.reason


# ---- the hook, on a stand-in driver -----------------------------------------------------------------


class NoNicDriver:
    """A driver whose VMs have no host-side network devices (as drivers without NICs answer)."""

    def state(self, name: str) -> DomainState:
        return DomainState.PAUSED

    def interfaces(self, name: str) -> list[str]:
        return []


def context(tmp_path: Path, notes: list[str], **spec: object) -> HookContext:
    with extensions.only({"nic-tuning": NicTuningBlock}):
        parsed = parse_spec({**SPEC, **spec})
    return HookContext(Phase.START_PAUSED, parsed, NoNicDriver(), tmp_path, notes.append)  # type: ignore[arg-type]


def test_vm_without_host_devices_is_recorded_as_such(tmp_path):
    notes: list[str] = []
    NicTuningPlugin().start_paused(context(tmp_path, notes))
    assert json.loads((tmp_path / RECORD_FILE).read_text()) == {"vm": "demo", "domain_state": "paused", "devices": []}
    assert notes == ["turned gso, gro off on no host-side devices (domain paused)"]


def test_vm_that_opts_out_is_left_alone_and_loses_its_old_record(tmp_path):
    (tmp_path / RECORD_FILE).write_text("{}")
    notes: list[str] = []
    NicTuningPlugin().start_paused(context(tmp_path, notes, extensions={"nic-tuning": {"enabled": False}}))
    assert not (tmp_path / RECORD_FILE).exists()
    assert notes == ["left the NICs as they are: disabled by the VM's spec"]
