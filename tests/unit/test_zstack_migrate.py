"""ZStack's /vm/migrate mapped onto vmhost's migration: the body as the management node sends it (KVMHost's
MigrateVmCmd, and zstack-utility's kvmagent/test/utils/vm_utils.py migrate_vm_cmd_body), its destination found
among peer_token_files by address, its fields mapped or refused by name, and ZStack's reply shape."""

import time
from pathlib import Path
from typing import Any

import pytest

from tests.eventually import eventually
from tests.fakes.driver import FakeDriver, FakeHypervisor
from tests.unit.test_zstack_convert import UUID
from tests.unit.test_zstack_power import start_command, started
from vmhost.api.operations import CallbackTargets, Operations
from vmhost.api.zstack import routes
from vmhost.api.zstack.handlers import ZStackHost
from vmhost.api.zstack.migrate import migrate_vm
from vmhost.api.zstack.tasks import AsyncTasks, Task
from vmhost.config import HostConfig
from vmhost.dialects.zstack import Unmappable
from vmhost.engine import Engine
from vmhost.engine.peer import MigrationRequest
from vmhost.errors import NotFound, VmhostError

DEST_IP, DEST_MN_IP, SRC_IP = "172.20.0.12", "10.0.245.49", "172.20.0.11"


def migrate_cmd(**changes: Any) -> dict[str, Any]:
    """What KVMHost.migrateVm sends (plugin/kvm KVMHost.java, "migrate-vm" flow), defaults as the test body's."""
    cmd = {
        "vmUuid": UUID,
        "destHostIp": DEST_IP,
        "srcHostIp": SRC_IP,
        "destHostManagementIp": DEST_MN_IP,
        "useNuma": False,
        "migrateFromDestination": False,
        "autoConverge": False,
        "xbzrle": True,  # kvm.migrate.xbzrle defaults to true (conf/globalConfig/kvm.xml)
        "storageMigrationPolicy": "FullCopy",
        "downTime": None,
        "vdpaPaths": None,
        "nics": [{"mac": "fa:62:4a:61:6c:00", "bridgeName": "br_eth0", "uuid": "8f9ef2e5061a4b28b5f79ff24ab0c0ce"}],
        "disks": None,
        "reload": False,
        "bandwidth": 0,
        "kvmHostAddons": {"qcow2Options": " -o cluster_size=2097152 "},
    }
    return {**cmd, **changes}


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ZStackHost:
    """A ZStack VM started on the fake hypervisor; this host has a token for the destination's agent, named by its
    management address (and another agent's); Engine.migrate is recorded."""
    token = tmp_path / "peer-token"
    token.write_text("z" * 40)
    config = HostConfig(
        data_dir=tmp_path / "data",
        stop_timeout=0.5,
        allowed_paths=(tmp_path, Path("/var/lib/zstack")),
        peer_token_files={f"https://{DEST_MN_IP}:7070": token, "https://192.0.2.99:7070": token},
    )
    hypervisor = FakeHypervisor()
    engine = Engine(config, FakeDriver(hypervisor))
    hypervisor.sink = engine.on_domain_event
    host = ZStackHost(engine)
    started(host, start_command())
    monkeypatch.setattr(engine, "migrate", Recorded())
    return host


class Recorded:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, MigrationRequest]] = []

    def __call__(self, name: str, to: str, request: MigrationRequest) -> None:
        self.calls.append((name, to, request))


def migrated(host: ZStackHost, cmd: dict[str, Any]) -> tuple[str, str, MigrationRequest]:
    job = migrate_vm(host, cmd)
    assert job.work() == {}
    [call] = host.engine.migrate.calls  # type: ignore[attr-defined]
    return call


def refusal(host: ZStackHost, **changes: Any) -> Unmappable:
    with pytest.raises(Unmappable) as refused:
        migrate_vm(host, migrate_cmd(**changes))
    assert host.engine.migrate.calls == []  # type: ignore[attr-defined]
    return refused.value


def test_the_management_nodes_body_is_a_live_migration_with_storage_copied(host):
    name, to, request = migrated(host, migrate_cmd())
    assert name == host.find(UUID, "vmUuid").name
    assert to == f"https://{DEST_MN_IP}:7070"
    assert request == MigrationRequest(copy_storage=True)
    assert migrate_vm(host, migrate_cmd()).kind == "zstack-migrate"


def test_auto_converge_bandwidth_and_timeout_are_mapped(host):
    _, _, request = migrated(host, migrate_cmd(autoConverge=True, bandwidth=300, timeout=600))
    assert request == MigrationRequest(copy_storage=True, auto_converge=True, bandwidth_mib=300, timeout=600.0)


def test_the_task_contexts_timeout_and_deadline_bound_the_migration(host):
    deadline_ms = int((time.time() + 120) * 1000)
    context = {"__messagetimeout__": "1800000", "__messagedeadline__": str(deadline_ms)}
    _, _, request = migrated(host, migrate_cmd(taskContext=context))
    assert request.timeout is not None and 110 < request.timeout <= 120


@pytest.mark.parametrize(("policy", "copies"), [(None, False), ("FullCopy", True), ("IncCopy", True)])
def test_storage_migration_policy_is_copy_storage(host, policy, copies):
    _, _, request = migrated(host, migrate_cmd(storageMigrationPolicy=policy))
    assert request.copy_storage is copies


def test_the_destination_is_found_by_its_migration_address_too(host):
    tokens = host.engine.config.peer_token_files
    tokens[f"https://{DEST_IP}:7443"] = tokens.pop(f"https://{DEST_MN_IP}:7070")
    _, to, _ = migrated(host, migrate_cmd())
    assert to == f"https://{DEST_IP}:7443"


def test_a_token_file_that_is_gone_is_refused_before_anything_runs(host, tmp_path):
    host.engine.config.peer_token_files[f"https://{DEST_MN_IP}:7070"] = tmp_path / "gone"
    with pytest.raises(VmhostError, match=r"peer_token_files: cannot read the token file .*gone"):
        migrate_vm(host, migrate_cmd())


def test_no_agent_at_the_destination_is_refused_naming_dest_host_ip(host):
    refused = refusal(host, destHostIp="172.20.0.77", destHostManagementIp="10.0.245.77")
    assert refused.path == "destHostIp"
    assert "no vmhost agent at 10.0.245.77 or 172.20.0.77 is known" in refused.message
    assert "peer_token_files" in refused.message
    assert refusal(host, destHostIp=None).path == "destHostIp"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"migrateFromDestination": True}, "migrateFromDestination"),
        ({"reload": True}, "reload"),
        ({"downTime": 300}, "downTime"),
        ({"disks": {"/zstack/old.qcow2": {"installPath": "/zstack/new.qcow2"}}}, "disks"),
        ({"vdpaPaths": ["/dev/vhost-vdpa-0"]}, "vdpaPaths"),
        ({"storageMigrationPolicy": "SomethingElse"}, "storageMigrationPolicy"),
        ({"bandwidth": "fast"}, "bandwidth"),
    ],
)
def test_what_vmhost_cannot_honour_is_refused_naming_the_zstack_field(host, changes, field):
    assert refusal(host, **changes).path == field


def test_fields_that_change_no_outcome_are_accepted(host):
    _, _, request = migrated(host, migrate_cmd(useNuma=True, xbzrle=True, downTime=0, disks={}, vdpaPaths=[]))
    assert request == MigrationRequest(copy_storage=True)


def test_a_vm_not_made_through_the_dialect_is_not_there_for_zstack(host):
    with pytest.raises(NotFound, match="no VM with uuid ffffffffffffffffffffffffffffffff on this host"):
        migrate_vm(host, migrate_cmd(vmUuid="ffffffffffffffffffffffffffffffff"))


def test_the_path_is_served_and_replies_in_zstacks_shape(host):
    assert routes.ASYNC_PATHS["/vm/migrate"] is migrate_vm
    replies: list[tuple[str, Any]] = []
    tasks = AsyncTasks(
        Operations(), CallbackTargets(("127.0.0.0/8",)), deliver=lambda url, body, headers: replies.append((url, body))
    )
    callback = "http://127.0.0.1:8080/kvm/callback"
    tasks.run(Task("t-1", callback), lambda: migrate_vm(host, migrate_cmd()))
    tasks.run(Task("t-2", callback), lambda: migrate_vm(host, migrate_cmd(migrateFromDestination=True)))
    eventually(lambda: len(replies) == 2, 10, 0.02, "both replies")
    by_success = sorted(replies, key=lambda reply: reply[1]["success"])
    assert by_success[1][1] == {"success": True, "error": ""}
    assert by_success[0][1]["success"] is False
    assert by_success[0][1]["error"].startswith("migrateFromDestination: vmhost migrates from the source agent only")
