"""user-data: a #cloud-config document built from the spec's cloud_init block, or its raw user_data as given."""

from typing import Any

from vmhost.render.cloudinit.text import dump
from vmhost.spec import VMSpec
from vmhost.spec.cloud_init import CloudInit, User, WriteFile

HEADER = "#cloud-config\n"
PASSWORDLESS_SUDO = "ALL=(ALL) NOPASSWD:ALL"


def has_user_data(spec: VMSpec) -> bool:
    """Whether user-data says anything (the hostname goes in meta-data)."""
    return user_data(spec) != HEADER


def user_data(spec: VMSpec) -> str:
    block = spec.cloud_init
    if block is not None and block.user_data is not None:
        return block.user_data
    document = _cloud_config(block) if block is not None else {}
    return HEADER + (dump(document) if document else "")


def _cloud_config(block: CloudInit) -> dict[str, Any]:
    """Keys in cloud-init's documented order; empty ones left out so a default stays cloud-init's default. The
    hostname is meta-data's local-hostname."""
    document: dict[str, Any] = {}
    users: list[Any] = ["default"] if block.ssh_authorized_keys else []
    users += [_user(user) for user in block.users]
    if users:
        document["users"] = users
    if block.ssh_authorized_keys:
        document["ssh_authorized_keys"] = list(block.ssh_authorized_keys)
    if block.write_files:
        document["write_files"] = [_file(entry) for entry in block.write_files]
    if block.packages:
        document["packages"] = list(block.packages)
    if block.runcmd:
        document["runcmd"] = list(block.runcmd)
    return document


def _user(user: User) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": user.name}
    if user.groups:
        entry["groups"] = ", ".join(user.groups)
    if user.shell:
        entry["shell"] = user.shell
    if user.sudo:
        entry["sudo"] = PASSWORDLESS_SUDO if user.sudo is True else user.sudo
    if user.password_hash is not None:
        entry["passwd"] = user.password_hash.get_secret_value()
        entry["lock_passwd"] = False
    if user.ssh_authorized_keys:
        entry["ssh_authorized_keys"] = list(user.ssh_authorized_keys)
    return entry


def _file(entry: WriteFile) -> dict[str, Any]:
    rendered: dict[str, Any] = {"path": entry.path, "content": entry.content}
    if entry.permissions:
        rendered["permissions"] = entry.permissions if entry.permissions.startswith("0") else "0" + entry.permissions
    if entry.owner:
        rendered["owner"] = entry.owner
    if entry.append:
        rendered["append"] = True
    return rendered
