"""Golden OCI runtime configs (config.json) for representative container specs, and their shape next to runc's.

After an intended change to the renderer, regenerate the files and review the diff:

    .venv/bin/pytest tests/unit/test_oci_render.py --regenerate-golden
"""

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Golden
from vmhost.render.oci import ImageConfig, process_args, render_config
from vmhost.spec import parse_spec

GOLDEN = Path(__file__).parent / "golden" / "oci"
IMAGE = ImageConfig(
    entrypoint=["/docker-entrypoint.sh"],
    cmd=["nginx", "-g", "daemon off;"],
    env=["PATH=/usr/bin", "NGINX_VERSION=1.25"],
    workdir="/srv",
)


def container(name: str, number: int, **block: Any) -> dict[str, Any]:
    return {
        "name": name,
        "uuid": f"00000000-0000-4000-8000-0000000001{number:02d}",
        "kind": "container",
        "memory": "128MiB",
        "container": {"rootfs": {"type": "directory", "path": "/srv/rootfs"}, **block},
    }


CASES: dict[str, tuple[dict[str, Any], ImageConfig | None]] = {
    "minimal": (container("minimal", 1, command=["/bin/sh", "-c", "echo hi"]), None),
    "limits-and-mounts": (
        {
            **container(
                "limits",
                2,
                command=["/bin/server"],
                args=["--port", "8080"],
                env={"MODE": "prod"},
                workdir="/var/lib/app",
                uid=1000,
                gid=1000,
                hostname="app-1",
                read_only=True,
                mounts=[
                    {"source": "/srv/data", "target": "/data"},
                    {"source": "/etc/app.conf", "target": "/etc/app.conf", "read_only": True},
                ],
            ),
            "cpu": {"vcpus": 2, "shares": 512},
            "memory": "1GiB",
        },
        None,
    ),
    "image-defaults": (
        {
            **container("image", 3),
            "container": {
                "rootfs": {"type": "oci-layout", "path": "/srv/images/nginx", "ref": "1.25"},
                "env": {"NGINX_VERSION": "1.27"},
                "network": {"mode": "bridge", "bridge": "br0"},
            },
        },
        IMAGE,
    ),
    "netns": (container("joined", 4, command=["sleep", "1000"], network={"mode": "netns", "netns": "edge"}), None),
}


def rendered(case: str) -> dict[str, Any]:
    document, image = CASES[case]
    spec = parse_spec(document)
    rootfs = Path("/var/lib/vmhost/vms") / str(spec.uuid) / "container/bundle/rootfs" if image else Path("/srv/rootfs")
    return render_config(spec, rootfs, image, oci_version="1.0.2-dev")


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_matches_golden(case: str, golden: Golden) -> None:
    text = json.dumps(rendered(case), indent=2, sort_keys=True) + "\n"
    golden(GOLDEN / f"{case}.json", text)


def test_the_spec_command_replaces_the_images_entrypoint_and_cmd():
    spec = parse_spec(container("c", 5, command=["/bin/sh"]))
    assert spec.container is not None
    assert process_args(spec.container, IMAGE) == ["/bin/sh"]
    spec.container.command = []
    assert process_args(spec.container, IMAGE) == ["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]
    spec.container.args = ["-V"]
    assert process_args(spec.container, IMAGE) == ["/docker-entrypoint.sh", "-V"]


def test_image_env_and_workdir_are_defaults_under_the_specs():
    config = rendered("image-defaults")
    assert config["process"]["env"] == ["PATH=/usr/bin", "NGINX_VERSION=1.27"]
    assert config["process"]["cwd"] == "/srv"


def test_limits_are_the_memory_size_and_vcpus_as_cfs_quota():
    resources = rendered("limits-and-mounts")["linux"]["resources"]
    assert resources["memory"] == {"limit": 1024**3}
    assert resources["cpu"] == {"quota": 200_000, "period": 100_000, "shares": 512}


def test_joining_a_named_netns_uses_its_path_and_every_other_namespace_is_new():
    namespaces = rendered("netns")["linux"]["namespaces"]
    assert {"type": "network", "path": "/var/run/netns/edge"} in namespaces
    assert [ns["type"] for ns in namespaces] == ["pid", "network", "ipc", "uts", "mount"]


def _shape(value: Any) -> Any:
    """Keys (recursively) and list lengths of runc's template, leaving out the values we choose ourselves."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [_shape(item) for item in value]
    return type(value).__name__


@pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")
def test_config_has_the_structure_runc_spec_generates(tmp_path):
    subprocess.run(["runc", "spec"], cwd=tmp_path, check=True, capture_output=True)
    template = json.loads((tmp_path / "config.json").read_text())
    ours = rendered("minimal")
    assert ours["ociVersion"] == template["ociVersion"]
    assert ours["mounts"] == template["mounts"]
    for key in ("maskedPaths", "readonlyPaths"):
        assert ours["linux"][key] == template["linux"][key]
    assert [ns["type"] for ns in ours["linux"]["namespaces"]] == [ns["type"] for ns in template["linux"]["namespaces"]]
    for key in ("capabilities", "rlimits", "noNewPrivileges", "user"):
        assert _shape(ours["process"][key]) == _shape(template["process"][key])
    assert set(template) <= set(ours)
    assert set(template["process"]) <= set(ours["process"])
    assert set(template["linux"]) <= set(ours["linux"])
    assert ours["linux"]["resources"]["devices"] == template["linux"]["resources"]["devices"]
