"""ZStack's /vm/migrate (kvmagent vm_plugin.py migrate_vm, the management node's KVMAgentCommands.MigrateVmCmd)
as vmhost's agent-to-agent migration (Engine.migrate): the management node asks the source host, and this agent
moves the VM to the vmhost agent of destHostIp, which takes over the VM and its ZStack mark.

Mapping, by ZStack field:
- vmUuid: the dialect's VM (as every path); destHostManagementIp, else destHostIp: the destination agent is the
  `peer_token_files` key whose host is that address (none: refused naming destHostIp); srcHostIp: this host.
- storageMigrationPolicy FullCopy or IncCopy: copy_storage (vmhost copies the VM's own disks whole; IncCopy's
  "the base is there already" holds too); null: shared storage.
- autoConverge: auto_converge; bandwidth (MiB/s, kvmagent hands it to libvirt as such): bandwidth_mib.
- timeout (seconds), else the task context's __messagetimeout__/__messagedeadline__ (milliseconds), whichever
  ends first: the migration's timeout.
- useNuma: kvmagent persists the domain at the destination for it; vmhost's destination always owns the VM.
- xbzrle: a speed hint (stream compression), on by default in ZStack (kvm.migrate.xbzrle): not applied, and no
  refusal, since the outcome is the same; nics: the NICs travel with the VM's spec.
- Refused, naming the field: migrateFromDestination (vmhost's source coordinates), downTime (no maximum
  downtime setting), disks (new volumes at other paths: vmhost copies into its own files), reload (a storage
  migration's recovery), vdpaPaths.
"""

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from vmhost.api.peer import ANY_PEER, reachable
from vmhost.api.zstack.handlers import ZStackHost
from vmhost.api.zstack.tasks import Job
from vmhost.config import HostConfig
from vmhost.dialects.zstack.values import Unmappable, choice, flag, integer, is_set, json_list, json_object
from vmhost.engine.peer import MigrationRequest

Command = Mapping[str, Any]
POLICIES = ("FullCopy", "IncCopy")
REFUSED_FLAGS = {
    "migrateFromDestination": "vmhost migrates from the source agent only; send /vm/migrate to the source host",
    "reload": "resuming an earlier storage migration is not supported by vmhost",
}


def migrate_vm(host: ZStackHost, cmd: Command) -> Job:
    """Refusals before anything runs (the reply names the field); then the migration, as an operation."""
    record = host.existing(cmd.get("vmUuid"), "vmUuid")
    config = host.engine.config
    (to,) = reachable(config, [destination_url(config, cmd)])
    request = migration_request(cmd)

    def work() -> dict[str, Any]:
        host.engine.migrate(record.name, to, request)
        return {}

    return Job("zstack-migrate", record.name, record.uuid, work)


def destination_url(config: HostConfig, cmd: Command) -> str:
    """The peer_token_files key whose host is the destination's management address (or destHostIp)."""
    dest = cmd.get("destHostIp")
    if not isinstance(dest, str) or not dest.strip():
        raise Unmappable("destHostIp", "is required (the destination host's address)")
    wanted = [address for address in (cmd.get("destHostManagementIp"), dest) if isinstance(address, str) and address]
    for address in wanted:
        urls = [url for url in config.peer_token_files if url != ANY_PEER and _host(url) == address.strip().lower()]
        if len(urls) > 1:
            raise Unmappable("destHostIp", f"{address} is the host of several agents in peer_token_files")
        if urls:
            return urls[0]
    named = " or ".join(dict.fromkeys(wanted))
    raise Unmappable(
        "destHostIp",
        f"no vmhost agent at {named} is known: add its URL (https://{dest}:PORT) to peer_token_files",
    )


def migration_request(cmd: Command) -> MigrationRequest:
    for field, why in REFUSED_FLAGS.items():
        if flag(cmd.get(field)):
            raise Unmappable(field, why)
    if is_set(cmd.get("downTime")):
        raise Unmappable("downTime", "vmhost has no maximum downtime setting for a migration")
    if json_object(cmd.get("disks"), "disks"):
        raise Unmappable(
            "disks", "vmhost copies the VM's own disks into its own files (storageMigrationPolicy), not to new volumes"
        )
    if json_list(cmd.get("vdpaPaths"), "vdpaPaths"):
        raise Unmappable("vdpaPaths", "vDPA devices are not supported by vmhost")
    policy = cmd.get("storageMigrationPolicy")
    copy_storage = policy is not None and choice(policy, "storageMigrationPolicy", POLICIES) in POLICIES
    bandwidth = integer(cmd["bandwidth"], "bandwidth") if cmd.get("bandwidth") is not None else None
    return MigrationRequest(
        copy_storage=copy_storage,
        auto_converge=flag(cmd.get("autoConverge")),
        bandwidth_mib=bandwidth if is_set(bandwidth) else None,
        timeout=_timeout(cmd),
    )


def _timeout(cmd: Command) -> float | None:
    """Seconds: `timeout`, else what is left of the management node's message timeout and deadline."""
    if is_set(cmd.get("timeout")):
        return float(cmd["timeout"])
    context = json_object(cmd.get("taskContext"), "taskContext")
    timeout, deadline = _millis(context.get("__messagetimeout__")), _millis(context.get("__messagedeadline__"))
    left = [timeout / 1000] if timeout is not None else []
    left += [deadline / 1000 - time.time()] if deadline is not None else []
    if not left:
        return None
    seconds = min(left)
    if seconds <= 0:
        raise Unmappable("taskContext", "the management node's deadline for this migration has passed")
    return seconds


def _millis(value: object) -> float | None:
    """The task context's numbers come as JSON numbers or as strings of digits; unset: None."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


PATHS = {"/vm/migrate": migrate_vm}
"""ZStack's path (vm_plugin.py KVM_MIGRATE_VM_PATH) and what serves it; routes.py registers it with the others."""
