"""Issue 12, least privilege: every host path a spec names must sit under the configured roots.

vmhost is root; QEMU, virtlogd and runc open what a spec names with root's reach. Before this, a token holder
could attach /etc/shadow as a disk, boot /etc/passwd as a kernel or let virtlogd write over any file.
"""

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import write_json
from vmhost.config import HostConfig, load_config
from vmhost.engine import resources
from vmhost.errors import VmhostError
from vmhost.spec import SpecError, parse_spec
from vmhost.storage.host_paths import HostPaths
from vmhost.storage.host_paths import problems as path_problems

EXAMPLES = Path(__file__).parents[2] / "examples"


def problems(document: dict[str, Any], config: HostConfig) -> dict[str, str]:
    """The host checks' findings for a spec: field path -> message."""
    return {p.path: p.message for p in resources.plan(parse_spec(document), config).problems}


def vm(**fields: Any) -> dict[str, Any]:
    return {"name": "paths", "memory": "64MiB", **fields}


def file_disk(path: Path | str) -> dict[str, Any]:
    return {"disks": [{"source": {"type": "file", "path": str(path), "format": "raw"}}]}


@pytest.fixture
def roots(tmp_path: Path) -> HostConfig:
    (tmp_path / "images").mkdir()
    return HostConfig(data_dir=tmp_path / "data", allowed_paths=(tmp_path / "images",))


def test_etc_shadow_as_a_disk_is_refused_naming_field_path_and_roots(roots):
    found = problems(vm(**file_disk("/etc/shadow")), roots)
    message = found["disks.0.source.path"]
    assert "/etc/shadow" in message and str(roots.path_roots[0]) in message and "allowed_paths" in message


def test_the_refusal_comes_before_any_look_at_the_file(roots):
    """No 'does not exist' versus 'not readable': the answer must not tell which host files exist."""
    assert "does not exist" not in problems(vm(**file_disk("/root/no-such-file")), roots)["disks.0.source.path"]


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"boot": {"kernel": {"kernel": "/etc/passwd"}}}, "boot.kernel.kernel"),
        ({"boot": {"kernel": {"kernel": "{images}/k", "initrd": "/etc/shadow"}}}, "boot.kernel.initrd"),
        ({"cdroms": [{"iso": "/etc/shadow"}]}, "cdroms.0.iso"),
        ({"console": {"log_file": "/etc/cron.d/vmhost"}}, "console.log_file"),
        ({"disks": [{"source": {"type": "overlay", "base": "/etc/shadow"}}]}, "disks.0.source.base"),
        (
            {
                "disks": [
                    {
                        "source": {
                            "type": "file",
                            "path": "{images}/top.qcow2",
                            "format": "qcow2",
                            "backing": [{"path": "/etc/shadow", "format": "raw"}],
                        }
                    }
                ]
            },
            "disks.0.source.backing.0.path",
        ),
    ],
)
def test_every_host_path_field_is_checked(roots, fields, where):
    document = json.loads(json.dumps(vm(**fields)).replace("{images}", str(roots.path_roots[0])))
    assert "outside the allowed paths" in problems(document, roots)[where]


@pytest.mark.parametrize(
    ("container", "where"),
    [
        ({"rootfs": {"type": "directory", "path": "/"}}, "container.rootfs.path"),
        ({"rootfs": {"type": "oci-layout", "path": "/etc"}}, "container.rootfs.path"),
        (
            {
                "rootfs": {"type": "directory", "path": "{images}/rootfs"},
                "mounts": [{"source": "/etc", "target": "/x"}],
            },
            "container.mounts.0.source",
        ),
    ],
)
def test_container_rootfs_and_mounts_are_checked(roots, container, where):
    document = {"name": "ct", "kind": "container", "memory": "64MiB", "container": container}
    document = json.loads(json.dumps(document).replace("{images}", str(roots.path_roots[0])))
    assert "outside the allowed paths" in problems(document, roots)[where]


def test_a_symlink_under_a_root_that_points_outside_is_refused(roots):
    link = roots.path_roots[0] / "innocent.img"
    link.symlink_to("/etc/shadow")
    message = problems(vm(**file_disk(link)), roots)["disks.0.source.path"]
    assert "resolves to /etc/shadow" in message


def test_a_symlinked_directory_escape_is_refused(roots, tmp_path):
    (roots.path_roots[0] / "etc").symlink_to("/etc")
    assert "disks.0.source.path" in problems(vm(**file_disk(roots.path_roots[0] / "etc" / "shadow")), roots)


def test_a_dotdot_escape_is_refused_naming_the_field(engine, guest_spec, vm_name):
    spec = guest_spec(vm_name("dotdot"), **file_disk("/var/lib/vmhost/images/../../../etc/shadow"))
    with pytest.raises(SpecError) as refused:
        engine.create(spec)
    assert [p.path for p in refused.value.problems] == ["disks.0.source.path"]


def test_a_file_under_a_root_is_accepted(roots):
    disk = roots.path_roots[0] / "disk.raw"
    disk.write_bytes(b"\0" * 4096)
    assert problems(vm(**file_disk(disk)), roots) == {}


def test_a_root_that_contains_the_data_dir_does_not_open_vmhosts_own_state(tmp_path):
    """state.db, api-token and every VM's owned disks live in the data dir: not reachable through a wider root."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "api-token").write_text("secret")
    config = HostConfig(data_dir=data, allowed_paths=(tmp_path,))
    assert "vmhost's own data directory" in problems(vm(**file_disk(data / "api-token")), config)["disks.0.source.path"]


def block_disk(path: str) -> dict[str, Any]:
    return {"disks": [{"source": {"type": "block", "path": path}}]}


def test_block_devices_are_refused_unless_listed(roots):
    message = problems(vm(**block_disk("/dev/loop0")), roots)["disks.0.source.path"]
    assert "no block device is allowed" in message and "allowed_block_devices" in message


@pytest.mark.skipif(not Path("/dev/loop0").is_block_device(), reason="needs /dev/loop0")
@pytest.mark.parametrize("entry", ["/dev/loop0", "/dev/loop*"])
def test_a_listed_block_device_is_accepted_by_path_or_prefix(tmp_path, entry):
    config = HostConfig(data_dir=tmp_path, allowed_block_devices=(entry,))
    assert problems(vm(**block_disk("/dev/loop0")), config) == {}
    assert (
        "is not allowed"
        in problems(vm(**block_disk("/dev/loop1")), HostConfig(allowed_block_devices=("/dev/loop0",)))[
            "disks.0.source.path"
        ]
    )


def test_defaults_allow_the_images_folder_of_the_data_dir_only():
    assert HostConfig().path_roots == (Path("/var/lib/vmhost/images"),)
    assert HostConfig(data_dir=Path("/srv/vmhost")).path_roots == (Path("/srv/vmhost/images"),)
    assert HostConfig().allowed_block_devices == ()


def test_the_minimal_example_needs_no_configuration():
    spec = parse_spec(json.loads((EXAMPLES / "01-minimal.json").read_text()))
    assert path_problems(spec, HostPaths.of(HostConfig())) == []


def test_config_keys_are_read_and_checked(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('allowed_paths = ["/srv/images"]\nallowed_block_devices = ["/dev/vg0/*"]\n')
    config = load_config(good)
    assert config.path_roots == (Path("/srv/images"),) and config.allowed_block_devices == ("/dev/vg0/*",)
    bad = tmp_path / "bad.toml"
    bad.write_text('allowed_paths = "relative"\n')
    with pytest.raises(VmhostError, match="allowed_paths must be a list of absolute paths"):
        load_config(bad)


def test_cli_create_exits_2_naming_the_field(cli, guest_spec, vm_name, tmp_path):
    result = cli(
        "create", "-f", str(write_json(tmp_path / "spec.json", guest_spec(vm_name("cli"), **file_disk("/etc/shadow"))))
    )
    assert result.returncode == 2
    assert "disks.0.source.path" in result.stderr + result.stdout
    assert "/etc/shadow" in result.stderr + result.stdout


def test_api_create_is_422_naming_the_field(http, guest_spec, vm_name):
    response = http.post("/v1/vms?wait=true", json=guest_spec(vm_name("api"), **file_disk("/etc/shadow")))
    assert response.status_code == 422
    [detail] = response.json()["details"]
    assert detail["path"] == "disks.0.source.path" and "/etc/shadow" in detail["message"]


def test_api_attach_of_etc_shadow_is_422(http, engine, guest_spec, vm_name):
    name = vm_name("attach-shadow")
    engine.create(guest_spec(name))
    response = http.post(f"/v1/vms/{name}/disks?wait=true", json={"source": {"type": "file", "path": "/etc/shadow"}})
    assert response.status_code == 422, response.text
    assert engine.record(name).spec["disks"] == []
