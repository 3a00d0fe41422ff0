"""Plan, then apply (issue 14 §1): the plan classifies each change of a patch before anything is touched, and
the apply is one journaled operation whose live steps go through the driver (here the fake hypervisor)."""

from pathlib import Path
from typing import Any

import pytest

from tests.fakes.driver import FakeHypervisor
from tests.fakes.engines import Killed, engine_on, killed_at, restarted, spec
from vmhost.drivers.base import Capability, DomainState
from vmhost.engine import Engine
from vmhost.engine.core import stored
from vmhost.engine.operations import live_patches
from vmhost.engine.plan import Context, build, differences
from vmhost.errors import Conflict, HypervisorError, NotFound
from vmhost.spec import SpecError, parse_spec
from vmhost.storage import qemu_img

MAC1, MAC2 = "52:54:00:00:00:01", "52:54:00:00:00:02"
NIC1 = {"type": "bridge", "source": "br0", "mac": MAC1}
NIC2 = {"type": "bridge", "source": "br0", "mac": MAC2}
DISK = {"source": {"type": "new", "size": "1MiB"}, "target": "vda"}
ALL = frozenset(Capability)
HOTPLUG = {"cpu": {"vcpus": 1, "max_vcpus": 4}, "memory": {"size": "256MiB", "max_size": "1GiB", "slots": 2}}


def planned(old: dict[str, Any], patch: dict[str, Any], **context: Any) -> dict[str, tuple[str, str]]:
    """path -> (how, reason) of a patch on a spec, for a VM running (default) with --live and every capability."""
    before = stored(parse_spec({"name": "web", "memory": "256MiB", **old}))
    after = stored(parse_spec({**before, **patch}))
    options = {"running": True, "live": True, "driver": "fake", "capabilities": ALL, **context}
    return {change.path: (change.how, change.reason) for change in build(before, after, Context(**options))}


# ---- the difference ---------------------------------------------------------------------------------


def test_nics_are_matched_by_mac_disks_and_cdroms_by_target() -> None:
    old = {"nics": [NIC1, NIC2], "cdroms": [{"target": "sda"}], "disks": [DISK]}
    new = {
        "nics": [NIC2, {**NIC1, "model": "e1000"}],
        "cdroms": [{"target": "sda", "iso": "/srv/a.iso"}],
        "disks": [{**DISK, "source": {"type": "new", "size": "2MiB"}}],
    }
    assert [path for path, _, _ in differences(old, new)] == [
        f"nics[{MAC1}].model",
        "nics order",
        "cdroms[sda].iso",
        "disks[vda].source.size",
    ]


def test_identical_specs_have_no_difference() -> None:
    document = stored(parse_spec(spec("web", nics=[NIC1])))
    assert list(differences(document, dict(document))) == []


# ---- classification ---------------------------------------------------------------------------------


def test_a_stopped_vm_takes_everything_offline_but_identity_shrink_and_source_changes() -> None:
    plan = planned(
        {"disks": [DISK]},
        {
            "name": "other",
            "cpu": {"vcpus": 2},
            "disks": [{**DISK, "source": {"type": "new", "size": "4MiB"}}],
        },
        running=False,
        live=False,
    )
    assert plan["cpu.vcpus"][0] == "offline"
    assert plan["disks[vda].source.size"] == ("offline", "grown with qemu-img")
    assert plan["name"] == ("refused", "cannot be changed by update")
    shrink = planned({"disks": [{**DISK, "source": {"type": "new", "size": "4MiB"}}]}, {"disks": [DISK]}, running=False)
    assert shrink["disks[vda].source.size"] == (
        "refused",
        "shrinking vda from 4MiB to 1MiB would cut off the guest's data",
    )
    retyped = planned(
        {"disks": [DISK]}, {"disks": [{**DISK, "source": {"type": "new", "size": "1MiB", "format": "raw"}}]}
    )
    assert retyped["disks[vda].source"][0] == "refused"


def test_a_running_vm_takes_metadata_now_and_the_rest_at_the_next_boot_without_live() -> None:
    plan = planned(
        {},
        {"description": "web", "labels": {"team": "a"}, "autostart": True, "cpu": {"vcpus": 2}, "nics": [NIC1]},
        live=False,
    )
    assert plan["description"][0] == plan["labels.team"][0] == plan["autostart"][0] == "live"
    assert plan["cpu.vcpus"] == ("next-boot", "applied at the next start; add --live to apply it to the running VM now")
    assert plan[f"nics[{MAC1}]"][0] == "next-boot"


def test_live_changes_are_live_when_the_driver_can_and_refused_naming_the_capability_when_not() -> None:
    patch = {"nics": [NIC1], "cpu": {"vcpus": 2, "max_vcpus": 4}, "cdroms": [{"target": "sda", "iso": "/a.iso"}]}
    old = {"cpu": {"vcpus": 1, "max_vcpus": 4}, "cdroms": [{"target": "sda"}]}
    assert {how for how, _ in planned(old, patch).values()} == {"live"}
    refused = planned(old, patch, capabilities=frozenset({Capability.VCPU_HOTPLUG}))
    assert refused[f"nics[{MAC1}]"] == ("refused", "the fake driver does not support nic-hotplug")
    assert refused["cdroms[sda].iso"] == ("refused", "the fake driver does not support media-change")
    assert refused["cpu.vcpus"][0] == "live"


def test_vcpus_above_the_ceiling_are_refused_naming_it() -> None:
    plan = planned({"cpu": {"vcpus": 1, "max_vcpus": 2}}, {"cpu": {"vcpus": 2, "max_vcpus": 8}})
    assert plan["cpu.vcpus"][0] == "live"
    assert plan["cpu.max_vcpus"][0] == "next-boot"
    over = planned({"cpu": {"vcpus": 1, "max_vcpus": 2}}, {"cpu": {"vcpus": 3, "max_vcpus": 8}})
    assert over["cpu.vcpus"] == ("refused", "3 vCPUs is above the hotplug ceiling cpu.max_vcpus = 2")
    fixed = planned({"cpu": {"vcpus": 1}}, {"cpu": {"vcpus": 2}})
    assert "without cpu.max_vcpus" in fixed["cpu.vcpus"][1]


def test_memory_balloons_below_the_boot_size_and_hotplugs_up_to_max_size() -> None:
    assert planned(HOTPLUG, {"memory": {**HOTPLUG["memory"], "size": "128MiB"}})["memory.size"] == (
        "live",
        "balloon within the boot size 256MiB",
    )
    assert planned(HOTPLUG, {"memory": {**HOTPLUG["memory"], "size": "512MiB"}})["memory.size"][0] == "live"
    over = planned(HOTPLUG, {"memory": {**HOTPLUG["memory"], "size": "2GiB", "max_size": "4GiB"}})["memory.size"]
    assert over == ("refused", "2GiB is above the hotplug ceiling memory.max_size = 1GiB")
    assert "without memory.max_size" in planned({}, {"memory": "512MiB"})["memory.size"][1]
    no_balloon = planned(
        {"memory": {"size": "256MiB", "balloon": False}}, {"memory": {"size": "128MiB", "balloon": False}}
    )
    assert no_balloon["memory.size"][0] == "refused"


def test_the_ceiling_is_what_the_vm_booted_with_not_a_pending_change() -> None:
    since_boot = {"cpu.max_vcpus": {"booted": 2, "pending": True}}
    plan = planned({"cpu": {"vcpus": 1, "max_vcpus": 8}}, {"cpu": {"vcpus": 4, "max_vcpus": 8}}, since_boot=since_boot)
    assert plan["cpu.vcpus"] == ("refused", "4 vCPUs is above the hotplug ceiling cpu.max_vcpus = 2")


def test_a_running_vms_owned_disk_grows_only_live_and_is_never_removed_under_it() -> None:
    grow = {"disks": [{**DISK, "source": {"type": "new", "size": "8MiB"}}]}
    assert planned({"disks": [DISK]}, grow)["disks[vda].source.size"][0] == "live"
    assert "add --live" in planned({"disks": [DISK]}, grow, live=False)["disks[vda].source.size"][1]
    assert planned({"disks": [DISK]}, {"disks": []})["disks[vda]"][0] == "refused"


def test_a_plan_view_masks_passwords() -> None:
    before = stored(parse_spec({"name": "web", "memory": "64MiB", "graphics": {"type": "vnc", "password": "old"}}))
    after = stored(parse_spec({**before, "graphics": {"type": "vnc", "password": "new"}}))
    [change] = build(before, after, Context(running=False, live=False, driver="fake", capabilities=ALL))
    assert change.view()["before"] == change.view()["after"] == "********"


# ---- apply, on the fake hypervisor -------------------------------------------------------------------


@pytest.fixture
def hypervisor() -> FakeHypervisor:
    return FakeHypervisor()


@pytest.fixture
def engine(hypervisor: FakeHypervisor, tmp_path: Path) -> Engine:
    return engine_on(hypervisor, tmp_path / "data")


def kinds(engine: Engine) -> list[str]:
    return [op.kind for op in engine.store.operations("web")]


def test_a_dry_run_plans_and_changes_nothing(engine, hypervisor):
    engine.create(spec("web", **HOTPLUG), start=True)
    before, ops, calls = engine.record("web").spec, kinds(engine), len(engine.driver.for_name("web").calls)
    result = engine.update("web", {"cpu": {"vcpus": 6, "max_vcpus": 8}, "description": "x"}, live=True, dry_run=True)
    assert [(c.path, c.how) for c in result.changes] == [
        ("description", "live"),
        ("cpu.vcpus", "refused"),
        ("cpu.max_vcpus", "next-boot"),
    ]
    assert (engine.record("web").spec, kinds(engine)) == (before, ops)
    assert len(engine.driver.for_name("web").calls) == calls


def test_a_patch_that_changes_nothing_says_so_and_journals_nothing(engine):
    engine.create(spec("web", nics=[NIC1]))
    ops = kinds(engine)
    result = engine.update("web", {"memory": "64MiB", "nics": [NIC1]})
    assert (result.changes, result.applied, result.message) == ([], False, "nothing to change")
    assert kinds(engine) == ops


def test_a_refused_change_applies_nothing_and_names_each_path(engine, hypervisor):
    engine.create(spec("web", **HOTPLUG), start=True)
    before, ops = engine.record("web").spec, kinds(engine)
    with pytest.raises(SpecError) as raised:
        engine.update("web", {"description": "x", "cpu": {"vcpus": 5, "max_vcpus": 8}}, live=True)
    assert [p.path for p in raised.value.problems] == ["cpu.vcpus"]
    assert "cpu.max_vcpus = 4" in raised.value.problems[0].message
    assert (engine.record("web").spec, kinds(engine)) == (before, ops)
    assert hypervisor.domains["web"].live["vcpus"] == 1


def test_metadata_on_a_running_vm_applies_now_and_nothing_is_pending(engine, hypervisor):
    engine.create(spec("web"), start=True)
    result = engine.update("web", {"labels": {"team": "a"}, "restart_policy": "always"})
    assert result.applied and {c.how for c in result.changes} == {"live"}
    assert engine.get("web")["labels"] == {"team": "a"} and engine.get("web")["pending"] == []
    assert hypervisor.domains["web"].spec["restart_policy"] == "always"
    assert [e.reason for e in engine.events.recent() if e.type == "changed"] == [
        "labels.team: live",
        "restart_policy: live",
    ]


def test_a_next_boot_change_is_pending_until_the_next_start(engine, hypervisor):
    engine.create(spec("web"), start=True)
    engine.update("web", {"cpu": {"vcpus": 2}})
    assert engine.get("web")["pending"] == ["cpu.vcpus"]
    assert hypervisor.domains["web"].spec["cpu"]["vcpus"] == 2, "defined now"
    assert hypervisor.domains["web"].live["vcpus"] == 1, "the running guest still has its boot count"
    engine.update("web", {"cpu": {"vcpus": 1}})
    assert engine.get("web")["pending"] == [], "back at the boot value: nothing pending"
    engine.update("web", {"cpu": {"vcpus": 2}})
    engine.stop("web")
    assert engine.get("web")["pending"] == ["cpu.vcpus"]
    engine.start("web")
    assert engine.get("web")["pending"] == []
    assert hypervisor.domains["web"].live["vcpus"] == 2


def test_live_changes_go_through_the_driver_and_persist_across_a_restart(engine, hypervisor):
    engine.create(spec("web", nics=[NIC1], cdroms=[{"target": "sda"}], **HOTPLUG), start=True)
    patch = {
        "nics": [NIC1, NIC2],
        "cpu": {"vcpus": 3},
        "memory": {"size": "512MiB"},
        "cdroms": [{"target": "sda", "iso": str(engine.config.data_dir / "a.iso")}],
    }
    (engine.config.data_dir / "a.iso").write_bytes(b"iso")
    result = engine.update("web", patch, live=True)
    assert {c.how for c in result.changes} == {"live"}
    live = hypervisor.domains["web"].live
    assert (live["nics"], live["vcpus"], live["memory"]) == ([MAC1, MAC2], 3, 512 << 20)
    assert live["media"] == {"sda": str(engine.config.data_dir / "a.iso")}
    assert engine.get("web")["pending"] == []
    [op] = engine.store.operations("web", limit=1)
    assert op.steps == [
        "begin",
        "disks-created",
        "vcpus-set",
        "memory-set",
        "media-changed:sda",
        f"nic-attached:{MAC2}",
        "defined",
        "recorded",
        "old-disks-removed",
    ]
    engine.stop("web")
    engine.start("web")
    assert hypervisor.domains["web"].live["nics"] == [MAC1, MAC2], "in the persistent definition too"
    engine.update("web", {"nics": [NIC2]}, live=True)
    assert hypervisor.domains["web"].live["nics"] == [MAC2]


def test_a_failure_after_a_live_change_takes_it_back(engine, hypervisor):
    engine.create(spec("web", **HOTPLUG), start=True)
    engine.driver.for_name("web").fail_next("define", HypervisorError("libvirt said no"))
    with pytest.raises(HypervisorError, match="libvirt said no"):
        engine.update("web", {"nics": [NIC1], "cpu": {"vcpus": 2}}, live=True)
    assert hypervisor.domains["web"].live["nics"] == [] and hypervisor.domains["web"].live["vcpus"] == 1
    assert engine.record("web").spec["nics"] == [] and hypervisor.domains["web"].spec["nics"] == []


def test_an_owned_disk_grows_offline_and_never_shrinks(engine):
    engine.create(spec("web", disks=[DISK]))
    engine.update("web", {"disks": [{**DISK, "source": {"type": "new", "size": "8MiB"}}]})
    [path] = engine.record("web").owned_paths
    assert qemu_img.image_info(Path(path), "qcow2").virtual_size == 8 << 20
    with pytest.raises(SpecError, match="would cut off"):
        engine.update("web", {"disks": [DISK]})
    assert qemu_img.image_info(Path(path), "qcow2").virtual_size == 8 << 20


def test_an_update_of_a_busy_vm_is_a_conflict(engine, hypervisor):
    engine.create(spec("web"), start=True)
    hypervisor.domains["web"].state = DomainState.SHUTTING_DOWN
    with pytest.raises(Conflict, match="stopping"):
        engine.update("web", {"description": "x"})


LIVE_PATCH = {"nics": [NIC1, NIC2], "cpu": {"vcpus": 2}, "memory": {"size": "512MiB"}}
LIVE_STEPS = ["begin", "disks-created", "vcpus-set", "memory-set", f"nic-attached:{MAC2}", "defined", "recorded"]


@pytest.mark.parametrize("step", LIVE_STEPS)
def test_an_apply_killed_at_each_journaled_step_leaves_the_vm_consistent(step, tmp_path, monkeypatch):
    hypervisor = FakeHypervisor()
    engine = engine_on(hypervisor, tmp_path / "data")
    engine.create(spec("web", nics=[NIC1], **HOTPLUG), start=True)
    with killed_at(monkeypatch, f"update:{step}"), pytest.raises(Killed):
        engine.update("web", LIVE_PATCH, live=True)
    engine = restarted(engine, hypervisor)
    record, domain = engine.record("web"), hypervisor.domains["web"]
    [op] = [op for op in engine.store.operations("web", limit=1)]
    completed = step == "recorded"
    assert op.state == ("completed by recovery" if completed else "rolled back by recovery")
    assert domain.spec == record.spec, "the definition is what the store says"
    assert domain.live["nics"] == [nic["mac"] for nic in record.spec["nics"]], "the guest has the stored NICs"
    assert domain.live["vcpus"] == record.spec["cpu"]["vcpus"]
    assert domain.live["memory"] == (512 << 20 if completed else 256 << 20)
    assert record.state == "running"


DEVICE_STEPS = ["disk-grown:vda", "media-changed:sda", f"nic-detached:{MAC2}", "defined", "recorded"]


@pytest.mark.parametrize("step", DEVICE_STEPS)
def test_an_apply_of_device_changes_killed_at_each_step_leaves_the_vm_consistent(step, tmp_path, monkeypatch):
    """Grow, media and unplug (the steps LIVE_STEPS does not reach): taken back unless recorded, in the guest too;
    a grown disk stays grown (nothing was lost)."""
    hypervisor = FakeHypervisor()
    engine = engine_on(hypervisor, tmp_path / "data")
    iso = engine.config.data_dir / "a.iso"
    iso.write_bytes(b"iso")
    engine.create(spec("web", nics=[NIC1, NIC2], disks=[DISK], cdroms=[{"target": "sda"}]), start=True)
    patch = {
        "nics": [NIC1],
        "disks": [{**DISK, "source": {"type": "new", "size": "4MiB"}}],
        "cdroms": [{"target": "sda", "iso": str(iso)}],
    }
    with killed_at(monkeypatch, f"update:{step}") as passed, pytest.raises(Killed):
        engine.update("web", patch, live=True)
    assert f"update:{step}" in passed
    engine = restarted(engine, hypervisor)
    record, domain = engine.record("web"), hypervisor.domains["web"]
    [op] = engine.store.operations("web", limit=1)
    completed = step == "recorded"
    assert op.state == ("completed by recovery" if completed else "rolled back by recovery")
    assert domain.spec == record.spec, "the definition is what the store says"
    assert domain.live["nics"] == [nic["mac"] for nic in record.spec["nics"]] == ([MAC1] if completed else [MAC1, MAC2])
    assert domain.live["media"] == {"sda": str(iso) if completed else None}
    assert domain.live["disks"] == {"vda": 4 << 20}
    assert record.state == "running"


def test_get_output_and_an_operation_result_work_as_a_patch(engine):
    engine.create(spec("web", nics=[NIC1]), start=True)
    engine.update("web", {"cpu": {"vcpus": 2}})
    view = engine.get("web")
    assert view["pending"] == ["cpu.vcpus"]
    assert engine.update("web", {**view, "plan": {"changes": []}}).message == "nothing to change"


def test_the_convenience_verbs_are_patches_that_name_what_is_missing():
    document = stored(parse_spec(spec("web", nics=[NIC1], disks=[DISK], cdroms=[{"target": "sda"}])))
    assert live_patches.detach_nic(document, MAC1.upper().replace(":", "-")) == {"nics": []}
    assert live_patches.resize_disk(document, "vda", "2MiB")["disks"][0]["source"]["size"] == "2MiB"
    assert live_patches.eject_media(document, "sda") == {"cdroms": [{**document["cdroms"][0], "iso": None}]}
    with pytest.raises(NotFound, match="no NIC with MAC 52:54:00:00:00:02"):
        live_patches.detach_nic(document, MAC2)
    with pytest.raises(NotFound, match="no disk vdb"):
        live_patches.resize_disk(document, "vdb", "2MiB")
    user_disk = {**document, "disks": [{"source": {"type": "file", "path": "/srv/a.img"}, "target": "vda"}]}
    with pytest.raises(SpecError, match="only a disk vmhost created"):
        live_patches.resize_disk(user_disk, "vda", "2MiB")


@pytest.mark.parametrize(("step", "size"), [("disk-resized:vda", 1 << 20), ("recorded", 8 << 20)])
def test_an_offline_growth_killed_midway_is_shrunk_back_or_kept(step, size, tmp_path, monkeypatch):
    """Before the store has it, the VM stayed stopped: nothing wrote past the old end, so it is shrunk back."""
    hypervisor = FakeHypervisor()
    engine = engine_on(hypervisor, tmp_path / "data")
    engine.create(spec("web", disks=[DISK]))
    with killed_at(monkeypatch, f"update:{step}"), pytest.raises(Killed):
        engine.update("web", {"disks": [{**DISK, "source": {"type": "new", "size": "8MiB"}}]})
    engine = restarted(engine, hypervisor)
    [path] = engine.record("web").owned_paths
    assert qemu_img.image_info(Path(path), "qcow2").virtual_size == size
    assert engine.record("web").spec["disks"][0]["source"]["size"] == ("1MiB" if size == 1 << 20 else "8MiB")
