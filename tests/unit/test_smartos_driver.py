"""VmadmDriver against the vmadm stand-in (tests/smartos_standin/vmadm), driven through the real Engine.

Each lifecycle path checks the exact vmadm command lines that change something, in order; queries (list, get,
lookup) are checked for their form. The stand-in follows vmadm's documented contract, not a live SmartOS host.
"""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.smartos_standin import EXECUTABLE, Standin
from vmhost.config import HostConfig
from vmhost.drivers.base import DomainState, DomainStats, Resources
from vmhost.drivers.smartos import VmadmDriver
from vmhost.drivers.smartos.driver import parse_list
from vmhost.drivers.smartos.update import update_payload
from vmhost.engine import Engine
from vmhost.engine.hooks import Hook, HookContext, Phase
from vmhost.errors import HypervisorError, NotFound, Unsupported, VmhostError
from vmhost.spec import SpecError, parse_spec
from vmhost.spec.units import MiB

UUID = "00000000-0000-4000-8000-0000000000aa"


@pytest.fixture
def standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Standin:
    monkeypatch.setenv("VMADM_STANDIN_STATE", str(tmp_path / "standin"))
    return Standin(tmp_path / "standin")


@pytest.fixture
def driver(standin: Standin) -> VmadmDriver:
    return VmadmDriver(command=str(EXECUTABLE), brand="bhyve")


@pytest.fixture
def engine(tmp_path: Path, driver: VmadmDriver) -> Iterator[Engine]:
    yield Engine(HostConfig(data_dir=tmp_path / "data", vm_driver="smartos", allowed_paths=(tmp_path,)), driver)


def spec(name: str = "web", **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "uuid": UUID,
        "memory": "512MiB",
        "nics": [{"type": "bridge", "source": "external", "mac": "52:54:00:00:00:01"}],
        **fields,
    }


def test_create_defines_with_autoboot_false_through_a_payload_file(engine: Engine, standin: Standin) -> None:
    engine.create(spec())
    payload_file = engine.config.data_dir / "vms" / UUID / "vmadm-create.json"
    assert standin.changes() == [["create", "-f", str(payload_file)]]
    assert json.loads(payload_file.read_text())["autoboot"] is False
    assert standin.vm("web")["state"] == "stopped"
    assert engine.get("web")["state"] == "stopped"
    assert ["list", "-p", "-o", "uuid,alias,state", "alias=web"] in standin.argv()


def test_start_runs_the_paused_phase_hooks_on_the_stopped_vm_then_vmadm_start(engine: Engine, standin: Standin) -> None:
    seen: list[DomainState] = []
    engine.hooks.append(Hook("probe", Phase.START_PAUSED, lambda ctx: seen.append(ctx.driver.state(ctx.spec.name))))
    engine.create(spec(), start=True)
    assert seen == [DomainState.SHUTOFF]
    assert standin.changes()[1:] == [["start", UUID]]
    assert engine.get("web")["state"] == "running"


def test_a_failing_paused_phase_hook_leaves_the_vm_stopped(engine: Engine, standin: Standin) -> None:
    def refuse(_ctx: HookContext) -> None:
        raise VmhostError("no")

    engine.create(spec())
    engine.hooks.append(Hook("refuser", Phase.START_PAUSED, refuse))
    with pytest.raises(VmhostError):
        engine.start("web")
    assert standin.changes()[1:] == [["stop", UUID, "-F"]]
    assert standin.vm("web")["state"] == "stopped"


def test_stop_is_a_graceful_vmadm_stop(engine: Engine, standin: Standin) -> None:
    engine.create(spec(), start=True)
    result = engine.stop("web", timeout=10)
    assert result.method == "acpi"
    assert standin.changes()[2:] == [["stop", UUID, "-t", "3600"]]
    assert standin.vm("web")["state"] == "stopped"


def test_stop_forces_with_stop_F_when_the_guest_ignores_the_power_button(engine: Engine, standin: Standin) -> None:
    engine.create(spec(), start=True)
    standin.ignore_stop("web")
    result = engine.stop("web", timeout=1)
    assert result.method == "forced"
    assert standin.changes()[2:] == [["stop", UUID, "-t", "3600"], ["stop", UUID, "-F"]]
    assert standin.vm("web")["state"] == "stopped"


@pytest.mark.parametrize(("brand", "during"), [("kvm", DomainState.SHUTTING_DOWN), ("bhyve", DomainState.RUNNING)])
def test_only_kvm_shows_stopping_while_the_guest_shuts_down(
    tmp_path: Path, standin: Standin, brand: str, during: DomainState
) -> None:
    """Changed with issue 21 item 11: VM.js doVmadmdStop (kvm) sets the `stopping` transition, doTermStop
    (bhyve) only signals init, so a bhyve VM stays `running` until it is down."""
    driver = VmadmDriver(command=str(EXECUTABLE), brand=brand)  # type: ignore[arg-type]
    engine = Engine(HostConfig(data_dir=tmp_path / "data", vm_driver="smartos"), driver)
    engine.create(spec(), start=True)
    standin.ignore_stop("web")
    driver.request_shutdown("web")
    assert driver.state("web") == during
    driver.destroy("web")
    assert driver.state("web") == DomainState.SHUTOFF


def test_starting_a_running_vm_and_stopping_a_stopped_one_succeed(
    engine: Engine, driver: VmadmDriver, standin: Standin
) -> None:
    engine.create(spec())
    driver.destroy("web")
    driver.resume("web")
    driver.resume("web")
    assert standin.changes()[1:] == [["stop", UUID, "-F"], ["start", UUID], ["start", UUID]]
    assert engine.stop("web").method == "acpi"
    assert engine.stop("web").method == "already-stopped"


def test_reboot_is_stop_t_and_start_on_bhyve_and_reset_is_reboot_F(engine: Engine, standin: Standin) -> None:
    """Changed with issue 21 item 9: bhyve's `vmadm reboot` halts the guest after a fixed 10 s."""
    engine.create(spec(), start=True)
    engine.reboot("web")
    engine.reboot("web", force=True)
    assert standin.changes()[2:] == [["stop", UUID, "-t", "60"], ["start", UUID], ["reboot", UUID, "-F"]]


def test_delete_forces_the_vm_off_then_runs_vmadm_delete(engine: Engine, standin: Standin) -> None:
    engine.create(spec(), start=True)
    engine.delete("web")
    assert standin.changes()[2:] == [["stop", UUID, "-F"], ["delete", UUID]]
    assert standin.vms() == {}


def test_an_update_of_a_stopped_vm_is_vmadm_update_with_only_what_changed(engine: Engine, standin: Standin) -> None:
    engine.create(spec())
    engine.update("web", {"memory": "1GiB", "labels": {"team": "web"}})
    update_file = engine.config.data_dir / "vms" / UUID / "vmadm-update.json"
    assert standin.changes()[1:] == [["update", UUID, "-f", str(update_file)]]
    changes = json.loads(update_file.read_text())
    assert sorted(changes) == ["ram", "set_customer_metadata", "set_internal_metadata"]
    assert (changes["ram"], changes["set_customer_metadata"]) == (1024, {"team": "web"})
    assert standin.vm("web")["ram"] == 1024
    assert engine.driver.recorded("web").spec["memory"]["size"] == "1GiB"  # type: ignore[union-attr]


def test_a_redefine_that_changes_nothing_runs_no_update(engine: Engine, driver: VmadmDriver, standin: Standin) -> None:
    engine.create(spec())
    record = engine.record("web")
    driver.define(
        parse_spec(record.spec),
        Resources(console_log=engine.config.data_dir / "x" / "console.log", owner=str(engine.config.data_dir)),
    )
    assert [args[0] for args in standin.changes()] == ["create"]


def test_adding_a_nic_is_add_nics_and_removing_one_is_remove_nics(engine: Engine, standin: Standin) -> None:
    engine.create(spec())
    second = {"type": "bridge", "source": "internal", "mac": "52:54:00:00:00:02"}
    update_file = engine.config.data_dir / "vms" / UUID / "vmadm-update.json"
    engine.update("web", {"nics": [spec()["nics"][0], second]})
    assert [nic["mac"] for nic in json.loads(update_file.read_text())["add_nics"]] == ["52:54:00:00:00:02"]
    engine.update("web", {"nics": [second]})
    assert json.loads(update_file.read_text())["remove_nics"] == ["52:54:00:00:00:01"]
    assert [nic["mac"] for nic in standin.vm("web")["nics"]] == ["52:54:00:00:00:02"]


def test_replacing_a_disk_in_place_is_refused(engine: Engine, tmp_path: Path) -> None:
    first, second = tmp_path / "a.raw", tmp_path / "b.raw"
    first.write_bytes(b"\0" * 1024)
    second.write_bytes(b"\0" * 1024)
    engine.create(spec(disks=[{"source": {"type": "file", "path": str(first), "format": "raw"}}]))
    with pytest.raises(VmhostError, match="cannot replace disk 0"):
        engine.update("web", {"disks": [{"source": {"type": "file", "path": str(second), "format": "raw"}}]})


def test_a_failed_provision_is_crashed_and_a_halted_guest_is_shutoff(
    engine: Engine, driver: VmadmDriver, standin: Standin
) -> None:
    engine.create(spec(), start=True)
    standin.set_state("web", "stopped")
    assert driver.states() == {"web": DomainState.SHUTOFF}
    standin.set_state("web", "failed")
    assert driver.state("web") == DomainState.CRASHED
    assert engine.get("web")["state"] == "crashed"


def test_recorded_gives_back_the_spec_with_its_vnc_password(engine: Engine, driver: VmadmDriver) -> None:
    engine.create(spec(graphics={"type": "vnc", "password": "hunter2"}))
    recorded = driver.recorded("web")
    assert recorded is not None
    assert recorded.spec["graphics"]["password"] == "hunter2"
    assert recorded.owner == str(engine.config.data_dir)
    assert [info.name for info in driver.list_owned()] == ["web"]


def test_info_and_interfaces_come_from_vmadm_get(engine: Engine, driver: VmadmDriver) -> None:
    engine.create(spec(), start=True)
    info = driver.info("web")
    assert (info.uuid, info.state, info.memory_bytes) == (UUID, DomainState.RUNNING, 512 * 2**20)
    assert driver.interfaces("web") == ["net0"]


def test_a_vm_vmadm_does_not_know_is_absent_and_not_found(driver: VmadmDriver) -> None:
    assert driver.state("ghost") == DomainState.ABSENT
    with pytest.raises(NotFound):
        driver.info("ghost")
    driver.destroy("ghost")
    driver.undefine("ghost")


def test_vmadm_errors_carry_its_stderr(driver: VmadmDriver) -> None:
    with pytest.raises(HypervisorError) as caught:
        driver.vmadm.run("get", "not-a-uuid", what="web")
    assert str(caught.value.detail).splitlines()[0] == "Invalid or missing UUID for get"  # then vmadm's usage
    with pytest.raises(NotFound) as missing:
        driver.vmadm.run("get", UUID, what="web")
    assert missing.value.detail == f"zoneadm: {UUID}: No such zone configured"


def test_pause_and_pci_passthrough_are_refused(engine: Engine, driver: VmadmDriver) -> None:
    engine.create(spec())
    with pytest.raises(Unsupported, match="the smartos driver does not support pause") as refused:
        driver.pause("web")
    assert refused.value.detail == "vmadm has no paused state"
    with pytest.raises(Unsupported, match="the smartos driver does not support pci-passthrough") as refused:
        driver.reserve_pci("0000:03:00.0")
    assert "bhyve passthrough is not rendered" in str(refused.value.detail)


def test_stats_and_graphics_ports_are_what_vmadm_knows(engine: Engine, driver: VmadmDriver) -> None:
    engine.create(spec(graphics={"type": "vnc", "port": 5901}), start=True)
    assert driver.domain_stats() == [DomainStats("web", DomainState.RUNNING, vcpus=1, memory_bytes=512 * MiB)]
    assert driver.graphics_ports("web") == {"vnc": 5901}


def test_a_spec_the_payload_cannot_carry_is_refused_before_anything_is_made(engine: Engine, standin: Standin) -> None:
    with pytest.raises(SpecError, match=r"nics\.0\.source"):
        engine.create(spec(nics=[{"type": "bridge", "source": "br-0"}]))
    assert standin.changes() == []


def test_the_console_is_vmadm_console_under_a_pty(engine: Engine, driver: VmadmDriver) -> None:
    engine.create(spec(), start=True)
    console = driver.open_console("web")
    try:
        seen = b""
        for _ in range(50):
            seen += console.read(0.1)
            if b"console of web" in seen:
                break
        assert b"console of web" in seen
    finally:
        console.close()


def test_list_output_with_colons_in_an_alias_parses() -> None:
    assert parse_list(f"{UUID}:a:b:running\n") == [type(parse_list(f"{UUID}:x:stopped")[0])(UUID, "a:b", "running")]


def test_smartos_only_settings_of_a_vmadm_payload_reach_vmadm(engine: Engine, standin: Standin) -> None:
    """tags, flexible_disk_size and pci_devices mean nothing to libvirt; the smartos block carries them to vmadm."""
    device = {"path": "/devices/pci@0,0/pci8086,6f0a@3,2/pci15d9,1528@9,1", "pci_slot": "4:0:0"}
    block = {"tags": {"smartdc_role": "zapi"}, "flexible_disk_size": 20480, "pci_devices": [device]}
    engine.create(spec(smartos=block))
    vm = standin.vm("web")
    assert (vm["tags"], vm["flexible_disk_size"], vm["pci_devices"]) == ({"smartdc_role": "zapi"}, 20480, [device])


def test_a_kvm_boot_string_and_dhcp_client_ids_reach_vmadm(tmp_path: Path, standin: Standin) -> None:
    driver = VmadmDriver(command=str(EXECUTABLE), brand="kvm")
    engine = Engine(HostConfig(data_dir=tmp_path / "data", vm_driver="smartos"), driver)
    nic = {"type": "bridge", "source": "admin", "smartos": {"allowed_dhcp_cids": ["0x01020304"]}}
    engine.create(spec(nics=[nic], boot={"order": ["hd", "cdrom"]}, smartos={"boot_once": ["cdrom"]}))
    vm = standin.vm("web")
    assert (vm["boot"], vm["nics"][0]["allowed_dhcp_cids"]) == ("order=cd,once=d", ["0x01020304"])


def test_an_update_sets_and_removes_tags_and_leaves_what_vmadm_filled_in_alone() -> None:
    """vmadm get shows every disk's refreservation (its size) and bhyve pci_slot: not a change unless vmhost sets it."""
    have: dict[str, Any] = {
        "cpu_shares": 100,
        "tags": {"a": "1", "b": "2"},
        "disks": [
            {
                "path": "/dev/zvol/rdsk/zones/x-disk0",
                "media": "disk",
                "model": "virtio",
                "boot": True,
                "size": 1024,
                "refreservation": 1024,
                "pci_slot": "0:4:0",
            }
        ],
    }
    want: dict[str, Any] = {"tags": {"a": "3"}, "disks": [{"media": "disk", "model": "virtio", "boot": True}]}
    want["disks"][0]["size"] = 1024
    assert update_payload(have, want) == {"set_tags": {"a": "3"}, "remove_tags": ["b"]}
    want["disks"][0]["compression"] = "lz4"
    assert update_payload(have, want)["update_disks"] == [
        {"path": "/dev/zvol/rdsk/zones/x-disk0", "compression": "lz4"}
    ]
