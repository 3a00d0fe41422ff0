"""Image references and the TLS rule of `image pull` (vmhost/storage/registry.py), and its config keys."""

import pytest

from vmhost.config import load_config
from vmhost.errors import VmhostError
from vmhost.spec import SpecError, parse_spec
from vmhost.storage.registry import PullError, Reference, listed, parse_reference, tls_verified

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5000/library/busybox:1.36", Reference("127.0.0.1:5000", "library/busybox", "1.36", None)),
        ("registry.example/team/app", Reference("registry.example", "team/app", "latest", None)),
        (f"localhost:5000/app@{DIGEST}", Reference("localhost:5000", "app", None, DIGEST)),
        (f"quay.io/a/b:v1@{DIGEST}", Reference("quay.io", "a/b", "v1", DIGEST)),
        ("busybox", Reference("docker.io", "library/busybox", "latest", None)),
        ("team/app:2", Reference("docker.io", "team/app", "2", None)),
    ],
)
def test_references_name_registry_repository_tag_and_digest(text, expected):
    assert parse_reference(text) == expected


@pytest.mark.parametrize(
    "text", ["", "Busybox", "a b", "registry.example/app:", "app@sha256:short", "app@md5:" + "a" * 32, "-x/y"]
)
def test_malformed_references_are_refused(text):
    with pytest.raises(PullError, match="is not an image reference"):
        parse_reference(text)


@pytest.mark.parametrize(
    ("registry", "insecure", "verified"),
    [
        ("127.0.0.1:5000", (), False),
        ("127.1.2.3", (), False),
        ("localhost:5000", (), True),  # a name: /etc/hosts or DNS decide where it goes
        ("10.0.0.5:5000", (), True),
        ("registry.example", (), True),
        ("registry.example:5000", ("registry.example:5000",), False),
        ("registry.example:5000", ("registry.example",), False),
        ("registry.example:5000", ("other.example",), True),
    ],
)
def test_tls_is_verified_except_for_loopback_addresses_and_configured_registries(registry, insecure, verified):
    assert tls_verified(registry, insecure) is verified


@pytest.mark.parametrize(
    ("registry", "entries", "expected"),
    [
        ("reg.lan:5000", ("reg.lan:5000",), True),
        ("reg.lan:5000", ("reg.lan",), True),
        ("reg.lan", ("reg.lan:5000",), False),
    ],
)
def test_a_config_list_names_a_registry_by_host_and_port_or_by_host(registry, entries, expected):
    assert listed(registry, entries) is expected


def test_config_keys_are_read_and_checked(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text(
        'insecure_registries = ["registry.lan:5000"]\nallowed_registries = ["registry.lan", "quay.io"]\n'
        "image_pull_max_bytes = 1024\nimage_pull_timeout = 5\n"
    )
    config = load_config(good)
    assert config.insecure_registries == ("registry.lan:5000",)
    assert config.allowed_registries == ("registry.lan", "quay.io")
    assert (config.image_pull_max_bytes, config.image_pull_timeout) == (1024, 5.0)
    bad = tmp_path / "bad.toml"
    bad.write_text('insecure_registries = ["http://registry.lan/"]\n')
    with pytest.raises(VmhostError, match="insecure_registries must be a list of host or host:port"):
        load_config(bad)
    bad.write_text('allowed_registries = "quay.io"\n')
    with pytest.raises(VmhostError, match="allowed_registries must be a list of host or host:port"):
        load_config(bad)
    bad.write_text("image_pull_max_bytes = 0\n")
    with pytest.raises(VmhostError, match="image_pull_max_bytes must be positive"):
        load_config(bad)


def test_container_image_is_short_for_an_image_rootfs_and_excludes_rootfs():
    spec = parse_spec({"name": "c", "kind": "container", "memory": "32MiB", "container": {"image": "busybox"}})
    assert spec.container is not None and spec.container.rootfs.type == "image"
    assert spec.container.rootfs.image == "busybox"  # type: ignore[union-attr]
    both = {"image": "busybox", "rootfs": {"type": "directory", "path": "/srv/rootfs"}}
    with pytest.raises(SpecError, match=r"give container\.image or container\.rootfs, not both"):
        parse_spec({"name": "c", "kind": "container", "memory": "32MiB", "container": both})
    stored = spec.model_dump(mode="json")
    stored["container"]["rootfs"].update(layout="/var/lib/vmhost/images-store/x.oci", digest="sha256:" + "b" * 64)
    stored["container"]["image"] = "other"  # a merge patch {container: {image: other}} on the stored spec
    switched = parse_spec(stored).container
    assert switched is not None and switched.rootfs.model_dump() == {  # resolved again from the store
        "type": "image",
        "image": "other",
        "layout": None,
        "digest": None,
    }
    with pytest.raises(SpecError, match="'bad name' is not an image name"):
        parse_spec({"name": "c", "kind": "container", "memory": "32MiB", "container": {"image": "bad name"}})
