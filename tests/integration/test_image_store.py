"""The image store for real: imports over HTTP from a server on loopback (through the agent and the CLI), the
refusals that leave nothing, and a tiny guest booted with a disk made from an image."""

import functools
import grp
import hashlib
import json
import os
import stat
import subprocess
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.eventually import eventually
from tests.integration.conftest import wait_for_console
from tests.integration.running_agent import free_port
from vmhost.storage.qemu_img import image_info

MiB = 1 << 20


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """No request lines on the test output."""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """An HTTP server on loopback serving a directory: an 8 MiB qcow2 of random data (32 MiB virtual), a text
    file, and a qcow2 whose backing file is /etc/passwd."""
    root = tmp_path_factory.mktemp("served")
    raw = root / "data.raw"
    raw.write_bytes(_random(8 * MiB))
    subprocess.run(["qemu-img", "convert", "-q", "-O", "qcow2", str(raw), str(root / "guest.qcow2")], check=True)
    subprocess.run(["qemu-img", "resize", "-q", str(root / "guest.qcow2"), "32M"], check=True)
    raw.unlink()
    (root / "notes.txt").write_text("no disk image..\n" * 64)  # 1 KiB: whole sectors, but text
    evil = root / "evil.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "/etc/passwd", "-F", "raw", str(evil)], check=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    thread.join(10)


def _random(size: int) -> bytes:
    return hashlib.shake_256(b"vmhost image store").digest(size)


def _owner(path: str) -> tuple[int, int, int]:
    status = os.stat(path)
    return status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode)


def _store(data_dir: Path) -> list[str]:
    """Everything in the store directory, temporary files included."""
    store = data_dir / "images-store"
    return sorted(path.name for path in store.iterdir()) if store.exists() else []


def test_url_import_through_the_agent_reports_progress_and_records_the_image(http, served, data_dir):
    url, root = served
    digest = hashlib.sha256((root / "guest.qcow2").read_bytes()).hexdigest()
    response = http.post("/v1/images", json={"source": f"{url}/guest.qcow2", "name": "guest", "sha256": digest})
    assert response.status_code == 202
    operation = http.get(f"/v1/operations/{response.json()['id']}", params={"wait": "true"}).json()
    assert operation["state"] == "succeeded", operation
    size = (root / "guest.qcow2").stat().st_size
    assert operation["progress"] == f"importing guest: {size}/{size} bytes"
    image = operation["result"]
    assert (image["name"], image["format"], image["virtual_size"], image["sha256"]) == (
        "guest",
        "qcow2",
        32 * MiB,
        digest,
    )
    assert http.get("/v1/images/guest").json() == image == http.get(f"/v1/images/{image['uuid']}").json()
    assert [row["name"] for row in http.get("/v1/images").json()] == ["guest"]
    events = [e for e in http.get("/v1/events").text.splitlines() if e.startswith("data: ")]
    reasons = [json.loads(e[6:])["reason"] for e in events if json.loads(e[6:])["type"] == "image"]
    assert reasons[0] == f"image guest: 0% (0/{size} bytes)"
    assert f"image guest: 100% ({size}/{size} bytes)" in reasons and reasons[-1] == "image guest"
    assert len(reasons) >= 4
    assert _store(data_dir) == [f"{image['uuid']}.qcow2"]
    assert http.delete("/v1/images/guest").status_code == 204
    assert _store(data_dir) == [] and http.get("/v1/images/guest").status_code == 404


def test_a_checksum_mismatch_is_refused_and_leaves_nothing(cli, served, data_dir):
    url, _root = served
    result = cli("image", "import", f"{url}/guest.qcow2", "--name", "guest", "--sha256", "0" * 64)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("error: sha256: the image's sha256 is ") and line.endswith("not " + "0" * 64)
    assert _store(data_dir) == [] and json.loads(cli("image", "list", "--json").stdout) == []


def test_an_unreachable_url_is_a_host_error_that_leaves_nothing(cli, data_dir):
    result = cli("image", "import", f"http://127.0.0.1:{free_port()}/x.qcow2", "--name", "x")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("error: source: cannot download http://127.0.0.1:") and "cannot connect" in line
    assert _store(data_dir) == []


@pytest.mark.parametrize(
    ("file", "reason"),
    [("notes.txt", "looks like text, not a disk image"), ("evil.qcow2", "names backing file /etc/passwd")],
)
def test_what_is_no_self_contained_disk_image_is_refused_and_leaves_nothing(cli, served, data_dir, file, reason):
    url, _root = served
    result = cli("image", "import", f"{url}/{file}", "--name", "bad")
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: source: {url}/{file}: ") and reason in line
    assert _store(data_dir) == [] and json.loads(cli("image", "list", "--json").stdout) == []


def test_a_local_import_is_a_copy_listed_got_and_deleted(cli, served, data_dir):
    _url, root = served
    source = data_dir.parent / "local.qcow2"
    source.write_bytes((root / "guest.qcow2").read_bytes())
    result = cli("image", "import", str(source), "--name", "local", "--uuid", "0f6e39b8-7c39-4f3f-9d7e-0d9d6c1b2a3e")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "imported local (0f6e39b8-7c39-4f3f-9d7e-0d9d6c1b2a3e): qcow2, 32MiB"
    assert source.exists()
    assert "local" in cli("image", "list").stdout
    got = json.loads(cli("image", "get", "local").stdout)
    assert (got["source"], got["kind"], Path(got["path"]).parent) == (str(source), "disk", data_dir / "images-store")
    assert cli("image", "delete", "local").returncode == 0
    assert cli("image", "get", "local").returncode == 1 and _store(data_dir) == []


def test_a_vmadm_payload_names_the_image_by_the_uuid_recorded_at_import(cli, engine, served, data_dir, vm_name):
    url, _root = served
    uuid = "5cf2ad7a-e9d1-4a3c-9c1b-0a5f0b8b3a11"
    assert cli("image", "import", f"{url}/guest.qcow2", "--name", "guest", "--uuid", uuid).returncode == 0
    name = vm_name("vmadm")
    payload = data_dir.parent / "payload.json"
    disk = {"model": "virtio", "image_uuid": uuid, "boot": True}
    payload.write_text(json.dumps({"brand": "bhyve", "alias": name, "disks": [disk]}))
    created = cli("create", "--dialect", "vmadm", "-f", str(payload))
    assert created.returncode == 0, created.stderr
    [source] = [d["source"] for d in engine.get(name)["disks"]]
    assert (source["type"], source["image"], source.get("size")) == ("image", "guest", None)
    [overlay] = engine.record(name).owned_paths
    assert image_info(Path(overlay)).virtual_size == 32 * MiB  # image_size defaults to the image's size
    engine.delete(name)

    other = "0f6e39b8-7c39-4f3f-9d7e-0d9d6c1b2a3e"
    payload.write_text(json.dumps({"brand": "bhyve", "alias": name, "disks": [{**disk, "image_uuid": other}]}))
    refused = cli("create", "--dialect", "vmadm", "-f", str(payload))
    assert refused.returncode == 2
    assert f"disks.0.image_uuid: no image with uuid {other} in vmhost's image store" in refused.stderr
    assert "missing_properties" not in refused.stderr and engine.store.list_vms() == []
    assert cli("image", "delete", "guest").returncode == 0


def test_a_vm_boots_with_a_disk_from_an_image_that_cannot_go_while_it_is_used(
    cli, engine, served, guest_spec, vm_name, data_dir
):
    url, _root = served
    assert cli("image", "import", f"{url}/guest.qcow2", "--name", "guest").returncode == 0
    small = data_dir.parent / "small.json"
    small.write_text(json.dumps(guest_spec(vm_name("small"), disks=[{"image": "guest", "size": "16MiB"}])))
    refused = cli("create", "-f", str(small))
    assert refused.returncode == 2
    assert "disks.0.source.size: 16MiB is smaller than image guest's virtual size 32MiB" in refused.stderr
    assert engine.store.list_vms() == [] and list((data_dir / "vms").iterdir()) == []

    name = vm_name("from-image")
    engine.create(guest_spec(name, disks=[{"image": "guest", "size": "48MiB"}]), start=True)
    wait_for_console(engine, name, f"VMHOST-BLK vda {48 * MiB}")
    [overlay] = map(Path, engine.record(name).owned_paths)
    image = json.loads(cli("image", "get", "guest").stdout)
    info = image_info(overlay)
    assert (info.format, info.virtual_size, info.backing_file, info.backing_format) == (
        "qcow2",
        48 * MiB,
        image["path"],
        "qcow2",
    )
    assert json.loads(cli("get", name).stdout)["disks"][0]["source"]["image"] == "guest"
    assert _owner(image["path"]) == (0, grp.getgrnam("libvirt-qemu").gr_gid, 0o640)  # libvirt did not chown it

    busy = cli("image", "delete", "guest")
    assert busy.returncode == 1
    assert busy.stderr.strip() == f"error: image guest is in use by {name}; delete those first"
    engine.delete(name)
    eventually(lambda: not overlay.exists(), 10, 0.1, "overlay removed")
    assert _owner(image["path"]) == (0, grp.getgrnam("libvirt-qemu").gr_gid, 0o640)
    assert cli("image", "delete", "guest").returncode == 0
    assert _store(data_dir) == []
