"""What cloud-init in the guest is told (NoCloud seed): hostname, users and keys, files, commands, packages, or
raw user-data / network-config for everything else."""

import base64
import binascii
import re
import struct
from collections.abc import Iterator
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, Field, SecretStr, SerializationInfo, field_serializer, field_validator

from vmhost.spec.base import SpecModel
from vmhost.spec.errors import Problem
from vmhost.spec.graphics import REVEAL_SECRETS

MASKED = "********"
"""What get/list/events show for a password hash; an update that sends it back keeps the stored one."""
SSH_KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ssh-dss",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)
HOSTNAME_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
USER_PATTERN = r"^[a-z_][a-z0-9_-]{0,31}$"
CRYPT_HASH = re.compile(r"^\$(1|2[abxy]?|5|6|7|y|gy)\$[./A-Za-z0-9$=,+-]+$")
"""crypt(3) output ($6$salt$hash, $y$..., $2b$...): a plain-text password is refused, never written to a seed."""
USER_DATA_FIELDS = ("users", "ssh_authorized_keys", "write_files", "runcmd", "packages")
"""What user_data would override: the two are mutually exclusive (cloud-init reads one user-data document)."""


def ssh_key(value: str) -> str:
    """An authorized_keys line: key type, the base64 blob (which starts with that same type), optional comment."""
    parts = value.strip().split(None, 2)
    if len(parts) < 2 or parts[0] not in SSH_KEY_TYPES:
        raise ValueError(
            f"is not an SSH public key ('<type> <base64> [comment]' with type one of "
            f"{', '.join(sorted(SSH_KEY_TYPES))}), got {_shorten(value)!r}"
        )
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"is not an SSH public key: its key data is not base64 ({_shorten(value)!r})") from None
    if len(blob) < 4 or blob[4 : 4 + struct.unpack(">I", blob[:4])[0]] != parts[0].encode():
        raise ValueError(f"is not an SSH public key: its key data is not a {parts[0]} key ({_shorten(value)!r})")
    return " ".join(parts)


def _shorten(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


SshKey = Annotated[str, AfterValidator(ssh_key)]


def yaml_mapping(value: str, what: str) -> dict[str, Any]:
    """Parse raw YAML handed to cloud-init: a typo must fail here, not silently in the guest."""
    try:
        document = yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ValueError(f"is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(document, dict):
        raise ValueError(f"must be a YAML mapping ({what}), got {type(document).__name__}")
    return document


class User(SpecModel):
    """A guest account cloud-init creates."""

    name: str = Field(pattern=USER_PATTERN, description="Login name.")
    ssh_authorized_keys: list[SshKey] = Field(default_factory=list, description="OpenSSH public keys.")
    sudo: bool | str = Field(
        False, description="true: passwordless sudo (ALL=(ALL) NOPASSWD:ALL); or a sudoers rule; false: none."
    )
    shell: str | None = Field(None, pattern=r"^/[^\s]*$", description="Login shell, e.g. /bin/bash.")
    groups: list[str] = Field(default_factory=list, description="Supplementary groups.")
    password_hash: SecretStr | None = Field(
        None,
        description="crypt(3) hash (mkpasswd -m sha-512); never logged and never returned by get/list/events. "
        "Without one the account's password is locked (SSH keys only).",
    )

    @field_validator("password_hash")
    @classmethod
    def _crypt(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not CRYPT_HASH.match(value.get_secret_value()):
            raise ValueError("must be a crypt(3) hash such as $6$salt$... (mkpasswd -m sha-512), not a password")
        return value

    @field_serializer("password_hash")
    def _mask(self, value: SecretStr | None, info: SerializationInfo) -> str | None:
        if value is None:
            return None
        if info.context and info.context.get(REVEAL_SECRETS):
            return value.get_secret_value()
        return MASKED


class WriteFile(SpecModel):
    """A file cloud-init writes in the guest."""

    path: str = Field(pattern=r"^/.+", description="Absolute path in the guest.")
    content: str = Field("", description="Text content.")
    permissions: str | None = Field(None, pattern=r"^0?[0-7]{3,4}$", description="Octal mode, e.g. '0644'.")
    owner: str | None = Field(None, pattern=r"^[a-z_][a-z0-9_-]*(:[a-z_][a-z0-9_-]*)?$", description="user:group.")
    append: bool = Field(False, description="Append instead of replacing.")


class CloudInit(SpecModel):
    """The NoCloud seed's content. user_data / network_config replace what they would conflict with: user_data
    excludes users, ssh_authorized_keys, write_files, runcmd and packages; network_config excludes the NICs'
    guest settings (addresses, dhcp, gateways, routes, dns, guest_name)."""

    hostname: str | None = Field(None, pattern=HOSTNAME_PATTERN, description="Guest hostname; default: the VM name.")
    users: list[User] = Field(default_factory=list, description="Accounts to create.")
    ssh_authorized_keys: list[SshKey] = Field(default_factory=list, description="Keys for the image's default user.")
    write_files: list[WriteFile] = Field(default_factory=list, description="Files to write.")
    runcmd: list[str | list[str]] = Field(
        default_factory=list, description="Commands run once at first boot: a shell line or an argv list."
    )
    packages: list[str] = Field(default_factory=list, description="Packages to install at first boot.")
    user_data: str | None = Field(
        None, description="Raw user-data: a #cloud-config YAML document (checked to parse) or a #! script."
    )
    network_config: str | None = Field(None, description="Raw network-config (version 1 or 2 YAML).")

    @field_validator("packages")
    @classmethod
    def _packages(cls, value: list[str]) -> list[str]:
        bad = [name for name in value if not re.match(r"^[A-Za-z0-9][A-Za-z0-9+.:=~_-]*$", name)]
        if bad:
            raise ValueError(f"must be package names, got {', '.join(map(repr, bad))}")
        return value

    @field_validator("user_data")
    @classmethod
    def _user_data(cls, value: str | None) -> str | None:
        if value is None or value.startswith("#!"):
            return value
        if not value.startswith("#cloud-config"):
            raise ValueError("must start with '#cloud-config' (a YAML document) or '#!' (a script)")
        yaml_mapping(value, "a cloud-config document")
        return value

    @field_validator("network_config")
    @classmethod
    def _network_config(cls, value: str | None) -> str | None:
        if value is not None:
            document = yaml_mapping(value, "a network-config document")
            config = document.get("network", document)
            if not isinstance(config, dict) or config.get("version") not in (1, 2):
                raise ValueError("must be a network-config with `version: 1` or `version: 2`")
        return value


def exclusive_problems(block: CloudInit, nics_configure_guest: bool) -> Iterator[Problem]:
    """Raw documents and the fields they would override cannot be combined: one or the other."""
    if block.user_data is not None:
        for name in USER_DATA_FIELDS:
            if getattr(block, name):
                yield Problem(f"cloud_init.{name}", "cannot be combined with cloud_init.user_data (put it there)")
    if block.network_config is not None and nics_configure_guest:
        yield Problem(
            "cloud_init.network_config",
            "cannot be combined with the NICs' guest settings (addresses, dhcp, gateways, routes, dns): use one",
        )


def keep_masked_secrets(document: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """An update built from `get` output carries the mask: give each such user its stored hash back."""
    block = document.get("cloud_init")
    if not isinstance(block, dict) or not isinstance(block.get("users"), list):
        return document
    before = (stored.get("cloud_init") or {}).get("users") or []
    hashes = {u.get("name"): u.get("password_hash") for u in before if isinstance(u, dict)}
    users = [
        {**user, "password_hash": hashes.get(user.get("name"))}
        if isinstance(user, dict) and user.get("password_hash") == MASKED
        else user
        for user in block["users"]
    ]
    return {**document, "cloud_init": {**block, "users": users}}
