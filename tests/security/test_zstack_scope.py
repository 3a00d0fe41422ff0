"""The ZStack dialect sees only the VMs it created. A management node (often a trusted source, with no token)
that names the UUID of a VM made through /v1 or the CLI gets the answer ZStack's agent gives for a VM it does not
have: stop and destroy succeed without touching it, pause and getvncport fail with "no VM", checkstate says
Shutdown, and start tries to create a new VM (refused: the uuid is in use) instead of redefining the native one
and deleting its disks. The native API cannot forge the dialect's mark either."""

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.integration.test_zstack import (  # noqa: F401  (fixtures)
    CallbackReceiver,
    ZStackAgent,
    bridge,
    image,
    receiver,
    start_command,
)
from vmhost.config import HostConfig
from vmhost.engine import Engine


@pytest.fixture
def zstack(config: HostConfig, engine: Engine, receiver: CallbackReceiver) -> Iterator[ZStackAgent]:  # noqa: F811
    with ZStackAgent(config, receiver) as running:
        yield running


def native(zstack: ZStackAgent, spec: dict[str, Any], start: bool = False) -> dict[str, Any]:
    """A VM made through the native API, as its own operator would."""
    made = zstack.http.post(f"/v1/vms?wait=true&start={str(start).lower()}", json=spec, headers=zstack.token_header)
    assert made.status_code == 200, made.text
    return dict(zstack.http.get(f"/v1/vms/{spec['name']}", headers=zstack.token_header).json())


def files_of(directory: Path) -> dict[str, int]:
    return {str(path.relative_to(directory)): path.stat().st_size for path in directory.rglob("*") if path.is_file()}


def test_start_with_a_native_vms_uuid_neither_redefines_it_nor_deletes_its_disks(
    bridge,  # noqa: F811
    zstack,
    engine,
    config,
    guest_spec,
    vm_name,
    libvirt_conn,
):
    name = vm_name("native-stopped")
    vm = native(zstack, guest_spec(name, disks=[{"source": {"type": "new", "size": "16MiB"}}]))
    stored = engine.store.find_vm(name)
    assert stored is not None
    vm_dir = config.data_dir / "vms" / vm["uuid"]
    disks_before = files_of(vm_dir)
    assert disks_before, "the native VM owns a disk"

    volumes = config.data_dir / "zstack-volumes"
    volumes.mkdir()
    root = image(volumes, "root.qcow2")
    cmd = start_command(vm_name("zs-intruder"), root, bridge, vmInstanceUuid=uuid.UUID(vm["uuid"]).hex)
    reply = zstack.call("/vm/start", cmd)

    assert reply["success"] is False
    assert "uuid" in reply["error"]
    assert engine.store.find_vm(name).spec == stored.spec, "the native spec is untouched"
    assert files_of(vm_dir) == disks_before, "and so are its disks"
    assert libvirt_conn.lookupByName(name).state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
    assert vm_name("zs-intruder") not in [d.name() for d in libvirt_conn.listAllDomains()]


def test_power_and_state_paths_treat_a_running_native_vm_as_unknown(zstack, guest_spec, vm_name, libvirt_conn):
    name = vm_name("native-running")
    vm = native(zstack, guest_spec(name), start=True)
    key = uuid.UUID(vm["uuid"]).hex
    domain = libvirt_conn.lookupByName(name)

    assert zstack.call("/vm/destroy", {"uuid": key})["success"] is True, "as for a VM not on this host"
    assert zstack.call("/vm/stop", {"uuid": key, "type": "force"})["success"] is True
    for path, command in (
        ("/vm/pause", {"uuid": key}),
        ("/vm/reboot", {"uuid": key}),
        ("/vm/getvncport", {"vmUuid": key}),
        ("/vm/attachdatavolume", {"vmInstanceUuid": key, "volume": {}}),
    ):
        reply = zstack.call(path, command)
        assert reply["success"] is False, path
        assert f"no VM with uuid {key}" in reply["error"], path
    assert zstack.call("/vm/checkstate", {"vmUuids": [key]})["states"] == {key: "Shutdown"}
    assert key not in zstack.call("/vm/vmsync", {})["states"]
    assert domain.state()[0] == libvirt.VIR_DOMAIN_RUNNING, "nothing the dialect did reached the native VM"


def test_the_native_api_cannot_set_or_change_the_dialects_mark(http, guest_spec, vm_name):
    name = vm_name("forged-mark")
    forged = http.post("/v1/vms", json=guest_spec(name, labels={"zstack.vm-name": "adopt-me"}))
    assert forged.status_code == 422
    assert [d["path"] for d in forged.json()["details"]] == ["labels.zstack.vm-name"]

    assert http.post("/v1/vms?wait=true", json=guest_spec(name, labels={"team": "a"})).status_code == 200
    adopted = http.patch(f"/v1/vms/{name}?wait=true", json={"labels": {"zstack.vm-name": "adopt-me"}})
    assert adopted.status_code == 422
    assert [d["path"] for d in adopted.json()["details"]] == ["labels.zstack.vm-name"]
    assert http.get(f"/v1/vms/{name}").json()["labels"] == {"team": "a"}
    relabelled = http.patch(f"/v1/vms/{name}?wait=true", json={"labels": {"team": "b", "zstack.vm-name": None}})
    assert relabelled.status_code == 200, "a patch that leaves the mark as it is (absent) is fine"
