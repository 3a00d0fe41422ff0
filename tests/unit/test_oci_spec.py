"""`kind: container` specs: what they must carry, what only VMs have, and the host checks the runc driver makes."""

import json
from pathlib import Path

import pytest

from vmhost.drivers.base import DomainState
from vmhost.drivers.runc import host, shim
from vmhost.drivers.runc import state as runc_state
from vmhost.spec import SpecError, parse_spec


def container_spec(**fields):
    return {
        "name": "c1",
        "kind": "container",
        "memory": "64MiB",
        "container": {"rootfs": {"type": "directory", "path": "/srv/rootfs"}, "command": ["sh"]},
        **fields,
    }


def problems(document) -> dict[str, str]:
    with pytest.raises(SpecError) as refused:
        parse_spec(document)
    return {problem.path: problem.message for problem in refused.value.problems}


def test_a_container_spec_parses_with_vm_defaults_left_alone():
    spec = parse_spec(container_spec())
    assert spec.kind == "container"
    assert spec.container is not None


def test_kind_container_needs_a_container_block_and_a_vm_must_not_have_one():
    assert problems({"name": "c1", "kind": "container", "memory": "64MiB"}) == {
        "container": "is required for kind container"
    }
    vm = container_spec()
    del vm["kind"]
    assert problems(vm) == {"container": "is only for kind container"}


def test_vm_only_blocks_are_refused_on_a_container_each_named():
    found = problems(
        container_spec(
            disks=[{"source": {"type": "new", "size": "1GiB"}}],
            nics=[{"type": "bridge", "source": "br0"}],
            graphics={"type": "vnc"},
            boot={"kernel": {"kernel": "/boot/vmlinuz"}},
            passthrough={"pci": [{"address": "0000:03:00.0"}]},
            cpu={"vcpus": 2, "pinning": [{"vcpu": 0, "host_cpus": "1"}]},
            memory={"size": "64MiB", "hugepages": True},
        )
    )
    assert set(found) >= {"disks", "nics", "graphics", "boot.kernel", "passthrough", "cpu.pinning", "memory.hugepages"}


@pytest.mark.parametrize(
    ("container", "path"),
    [
        ({"rootfs": {"type": "directory", "path": "rootfs"}}, "container.rootfs.path"),
        ({"rootfs": {"type": "directory", "path": "/r"}, "workdir": "tmp"}, "container.workdir"),
        ({"rootfs": {"type": "directory", "path": "/r"}, "env": {"A=B": "1"}}, "container.env"),
        (
            {"rootfs": {"type": "directory", "path": "/r"}, "mounts": [{"source": "/a", "target": "/"}]},
            "container.mounts.0.target",
        ),
        ({"rootfs": {"type": "directory", "path": "/r"}, "network": {"mode": "bridge"}}, "container.network"),
        (
            {"rootfs": {"type": "directory", "path": "/r"}, "network": {"mode": "netns", "netns": "a/b"}},
            "container.network.netns",
        ),
        (
            {"rootfs": {"type": "directory", "path": "/r"}, "network": {"mode": "bridge", "bridge": "x" * 16}},
            "container.network.bridge",
        ),
    ],
)
def test_bad_container_fields_are_named(container, path):
    assert path in problems(container_spec(container=container))


def test_host_problems_name_the_rootfs_mount_and_network_fields(tmp_path):
    spec = parse_spec(
        container_spec(
            container={
                "rootfs": {"type": "directory", "path": str(tmp_path / "missing")},
                "command": ["sh"],
                "mounts": [{"source": str(tmp_path / "nothing"), "target": "/data"}],
                "network": {"mode": "bridge", "bridge": "vmhostnobr0"},
            }
        )
    )
    found = dict(host.problems(spec, "runc", None))
    assert "is not a directory" in found["container.rootfs.path"]
    assert "does not exist" in found["container.mounts.0.source"]
    assert "bridge vmhostnobr0 does not exist" in found["container.network.bridge"]


def test_no_command_anywhere_is_a_host_problem(tmp_path):
    spec = parse_spec(container_spec(container={"rootfs": {"type": "directory", "path": str(tmp_path)}}))
    assert ("container.command", "no command is given and the image defines none") in host.problems(spec, "runc", None)


def test_limits_need_their_cgroup_controllers(tmp_path):
    (tmp_path / "cpu,cpuacct").mkdir()
    (tmp_path / "cpu,cpuacct" / "cgroup.procs").write_text("")
    assert host.cgroup_controllers(tmp_path) == {"cpu", "cpuacct"}
    assert host.limit_problems({"cpu", "cpuacct"}) == [
        ("memory.size", "this host's cgroups cannot enforce a memory limit (no memory controller)")
    ]
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    assert host.limit_problems(host.cgroup_controllers(tmp_path)) == []


def test_runc_missing_is_a_host_problem():
    spec = parse_spec(container_spec())
    assert ("kind", "runc (/nonexistent/runc) is not installed on this host") in host.problems(
        spec, "/nonexistent/runc", None
    )


@pytest.mark.parametrize(
    ("exit_status", "stop_requested", "expected"),
    [
        ({"code": 0, "signal": None}, False, DomainState.SHUTOFF),
        ({"code": 3, "signal": None}, False, DomainState.CRASHED),
        ({"code": None, "signal": 9}, False, DomainState.CRASHED),
        ({"code": None, "signal": 9}, True, DomainState.SHUTOFF),
        ({"code": 143, "signal": None}, True, DomainState.SHUTOFF),
    ],
)
def test_an_ended_container_is_shutoff_when_clean_or_asked_and_crashed_otherwise(
    tmp_path, exit_status, stop_requested, expected
):
    files = tmp_path / "container"
    files.mkdir()
    (files / shim.EXIT_FILE).write_text(json.dumps(exit_status))
    if stop_requested:
        (files / runc_state.STOP_REQUESTED).touch()
    assert runc_state.state(tmp_path / "runc", "c1", files) == expected


def test_a_defined_container_that_never_ran_is_shutoff_not_absent(tmp_path):
    assert runc_state.state(tmp_path / "runc", "c1", tmp_path) == DomainState.SHUTOFF


def test_an_init_gone_without_an_exit_status_or_shim_is_a_crash(tmp_path):
    (tmp_path / "runc" / "c1").mkdir(parents=True)
    (tmp_path / "runc" / "c1" / "state.json").write_text(json.dumps({"init_process_pid": 2**22 + 1}))
    assert runc_state.state(tmp_path / "runc", "c1", Path(tmp_path)) == DomainState.CRASHED
