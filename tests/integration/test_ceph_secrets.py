"""Ceph keys in real libvirt secrets: made before the domain is defined, private, and removed when the last domain
that refers to them is undefined (or the start that made them fails); a secret vmhost did not make is never removed.

No Ceph cluster is needed: domains are only defined, and the one start is expected to fail (this QEMU has no rbd
block driver), which is the failure path.
"""

import contextlib
import uuid as uuidlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from vmhost.api.zstack.handlers import ZStackHost
from vmhost.drivers.base import Resources
from vmhost.drivers.libvirt.driver import LibvirtDriver
from vmhost.drivers.libvirt.secrets import MARK
from vmhost.engine import Engine
from vmhost.errors import VmhostError
from vmhost.spec import parse_spec

URI = "qemu:///system"
KEY = "AQBx2xdkAAAAABAAl5yYVzPmMdJ3ROs/8n3O6g=="


@pytest.fixture
def secret_uuid(libvirt_conn: libvirt.virConnect) -> Iterator[uuidlib.UUID]:
    """A fresh secret UUID; whatever a test leaves under it is removed afterwards."""
    uuid = uuidlib.uuid4()
    yield uuid
    with contextlib.suppress(libvirt.libvirtError):
        libvirt_conn.secretLookupByUUIDString(str(uuid)).undefine()


@pytest.fixture
def driver() -> LibvirtDriver:
    return LibvirtDriver(URI, "tcg")


@pytest.fixture
def define(
    driver: LibvirtDriver, libvirt_conn: libvirt.virConnect, tmp_path: Path, vm_name: Callable[[str], str]
) -> Iterator[Callable[[str, uuidlib.UUID], str]]:
    """Define (never start) a domain whose disk is a Ceph image authenticated by secret `uuid`."""
    defined: list[str] = []

    def make(suffix: str, uuid: uuidlib.UUID) -> str:
        name = vm_name(suffix)
        monitors = ["192.0.2.1:6789"]
        auth = {"username": "zstack", "secret_uuid": str(uuid)}
        source = {"type": "rbd", "pool": "pool", "image": name, "monitors": monitors, "auth": auth}
        spec = parse_spec({"name": name, "memory": "64MiB", "disks": [{"source": source}]})
        driver.define(spec, Resources(console_log=tmp_path / f"{name}.log"))
        defined.append(name)
        return name

    yield make
    for name in defined:
        with contextlib.suppress(libvirt.libvirtError):
            libvirt_conn.lookupByName(name).undefine()


def exists(conn: libvirt.virConnect, uuid: uuidlib.UUID) -> bool:
    try:
        conn.secretLookupByUUIDString(str(uuid))
    except libvirt.libvirtError:
        return False
    return True


def test_secret_is_made_private_and_persistent_before_the_block_runs(driver, libvirt_conn, secret_uuid):
    with driver.ceph_secret(secret_uuid, KEY):
        secret = libvirt_conn.secretLookupByUUIDString(str(secret_uuid))
        xml = secret.XMLDesc(0)
        assert "private='yes'" in xml or 'private="yes"' in xml
        assert "ephemeral='no'" in xml or 'ephemeral="no"' in xml
        assert MARK in xml and KEY not in xml
        assert secret.usageType() == libvirt.VIR_SECRET_USAGE_TYPE_CEPH
        with pytest.raises(libvirt.libvirtError):
            secret.value()  # private: libvirt hands the value to QEMU only
    assert exists(libvirt_conn, secret_uuid)


def test_secret_goes_when_the_last_domain_using_it_is_undefined(driver, libvirt_conn, secret_uuid, define):
    with driver.ceph_secret(secret_uuid, KEY):
        first = define("ceph-a", secret_uuid)
    with driver.ceph_secret(secret_uuid, KEY):
        second = define("ceph-b", secret_uuid)
    driver.undefine(first)
    assert exists(libvirt_conn, secret_uuid), "the other domain still needs it"
    driver.undefine(second)
    assert not exists(libvirt_conn, secret_uuid)


def test_a_failed_block_removes_the_secret_it_made(driver, libvirt_conn, secret_uuid):
    with pytest.raises(RuntimeError), driver.ceph_secret(secret_uuid, KEY):
        raise RuntimeError("define failed")
    assert not exists(libvirt_conn, secret_uuid)


def test_a_secret_vmhost_did_not_make_is_never_removed(driver, libvirt_conn, secret_uuid, define):
    usage = f"<usage type='ceph'><name>{secret_uuid}</name></usage>"
    xml = f"<secret ephemeral='no' private='yes'><uuid>{secret_uuid}</uuid>{usage}</secret>"
    libvirt_conn.secretDefineXML(xml, 0)
    with driver.ceph_secret(secret_uuid, KEY):
        name = define("ceph-foreign", secret_uuid)
    driver.undefine(name)
    assert exists(libvirt_conn, secret_uuid)


def test_zstack_start_that_fails_leaves_no_secret_behind(config, libvirt_conn, secret_uuid, vm_name):
    """/vm/start with a Ceph root volume: the secret exists when the domain is defined; the start fails (no rbd
    driver in this QEMU, no Ceph), the engine undefines the domain, and the secret goes with it."""
    engine = Engine(config, LibvirtDriver(URI, "tcg"))
    seen_at_define: list[bool] = []
    libvirt_driver: Any = engine.driver.drivers["libvirt"]
    real_define = libvirt_driver.define

    def define_and_look(spec: Any, resources: Any) -> None:
        seen_at_define.append(exists(libvirt_conn, secret_uuid))
        real_define(spec, resources)

    libvirt_driver.define = define_and_look
    vm_uuid = uuidlib.uuid4().hex
    cmd = {
        "vmInstanceUuid": vm_uuid,
        "vmName": vm_name("zs-ceph"),
        "memory": 64 * 1024 * 1024,
        "cpuNum": 1,
        "imagePlatform": "Linux",
        "rootVolume": {
            "installPath": "ceph://pool/root-image",
            "deviceType": "ceph",
            "deviceId": 0,
            "volumeUuid": uuidlib.uuid4().hex,
            "useVirtio": True,
            "monInfo": [{"hostname": "192.0.2.1", "port": 6789}],
            "secretUuid": str(secret_uuid),
        },
        "addons": {"ceph_secret_key": KEY, "ceph_secret_uuid": str(secret_uuid)},
    }
    try:
        with pytest.raises(VmhostError) as caught:
            ZStackHost(engine).start(cmd).work()
        assert KEY not in str(caught.value) and KEY not in str(caught.value.detail)
        assert seen_at_define == [True]
        assert not exists(libvirt_conn, secret_uuid)
    finally:
        for record in engine.store.list_vms():
            engine.delete(record.name)
        engine.store.close()
