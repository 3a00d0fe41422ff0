"""A container workload (`kind: container`): rootfs, process, mounts, hostname and network, run by an OCI runtime.

Limits come from the blocks VMs use too: memory.size is the memory limit, cpu.vcpus the CPU quota (in CPUs) and
cpu.shares the relative weight; the restart policy, console log and labels are shared as well.
"""

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from vmhost.spec.base import SpecModel
from vmhost.spec.disk import IMAGE_NAME_PATTERN, absolute_path
from vmhost.spec.guest_net import GuestNetwork

ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
INTERFACE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$"
"""A Linux interface name (IFNAMSIZ: at most 15 characters)."""
NETNS_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
"""A name under /var/run/netns, as `ip netns add` makes it."""


class DirectoryRootfs(SpecModel):
    type: Literal["directory"]
    path: Path = Field(
        description="An unpacked root filesystem on the host, used in place: the container writes into it "
        "unless container.read_only is set, and runc may add mount points (/proc, /dev, /sys) to it."
    )

    _absolute = field_validator("path")(absolute_path)


class OciLayoutRootfs(SpecModel):
    type: Literal["oci-layout"]
    path: Path = Field(
        description="A local OCI image layout directory, or a tarball of one; unpacked into the VM's directory. "
        "Nothing is pulled from a registry."
    )
    ref: str = Field(
        "latest",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,254}$",
        description="The image's org.opencontainers.image.ref.name in the layout's index.",
    )

    _absolute = field_validator("path")(absolute_path)


class ImageRootfs(SpecModel):
    """An OCI image of vmhost's image store (`vmhost image pull`), unpacked into the VM's directory like a layout."""

    type: Literal["image"]
    image: str = Field(pattern=IMAGE_NAME_PATTERN, description="Name or UUID of an OCI image in the image store.")
    layout: Path | None = Field(
        None, description="The image's OCI layout in the store, as recorded at its pull. Set by vmhost."
    )
    digest: str | None = Field(
        None, pattern=r"^sha256:[0-9a-f]{64}$", description="The image's manifest digest. Set by vmhost."
    )


Rootfs = Annotated[DirectoryRootfs | OciLayoutRootfs | ImageRootfs, Field(discriminator="type")]


class Mount(SpecModel):
    source: Path = Field(description="Host path (file or directory), bind-mounted.")
    target: Path = Field(description="Absolute path inside the container, not '/'.")
    read_only: bool = Field(False, description="Mount read-only.")

    _absolute = field_validator("source", "target")(absolute_path)

    @field_validator("target")
    @classmethod
    def _not_root(cls, value: Path) -> Path:
        if value == Path("/"):
            raise ValueError("cannot mount over the container's root")
        return value


class ContainerNetwork(GuestNetwork):
    """Attachment, and (guest_net fields) the addresses, routes and resolv.conf set inside the container."""

    mode: Literal["none", "bridge", "netns"] = Field(
        "none",
        description="none: loopback only; bridge: a veth pair into `bridge`; netns: join the named network namespace.",
    )
    bridge: str | None = Field(None, pattern=INTERFACE_PATTERN, description="Host bridge for mode bridge.")
    netns: str | None = Field(
        None, pattern=NETNS_PATTERN, description="Network namespace name (ip netns) for mode netns."
    )

    @model_validator(mode="after")
    def _matches_mode(self) -> "ContainerNetwork":
        if self.mode == "bridge" and self.bridge is None:
            raise ValueError("mode bridge needs `bridge`")
        if self.mode == "netns" and self.netns is None:
            raise ValueError("mode netns needs `netns`")
        if self.mode != "bridge" and self.bridge is not None:
            raise ValueError("`bridge` is only used with mode bridge")
        if self.mode != "netns" and self.netns is not None:
            raise ValueError("`netns` is only used with mode netns")
        return self


class Container(SpecModel):
    """What runs and how; memory and cpu limits come from the spec's memory and cpu blocks. `image: NAME` (in place
    of `rootfs`) is short for `rootfs: {type: image, image: NAME}`: an OCI image of the image store."""

    rootfs: Rootfs
    command: list[str] = Field(default_factory=list, description="Entrypoint; default: the image's.")
    args: list[str] = Field(default_factory=list, description="Arguments after the command; default: the image's.")
    env: dict[str, str] = Field(default_factory=dict, description="Environment, added to the image's.")
    workdir: Path | None = Field(None, description="Working directory inside the container; default: the image's.")
    uid: int = Field(0, ge=0, le=2**32 - 2, description="User id the process runs as.")
    gid: int = Field(0, ge=0, le=2**32 - 2, description="Group id the process runs as.")
    hostname: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$", description="Default: the spec's name."
    )
    read_only: bool = Field(False, description="Mount the root filesystem read-only.")
    mounts: list[Mount] = Field(default_factory=list, description="Bind mounts.")
    network: ContainerNetwork = Field(default_factory=ContainerNetwork, description="Network attachment.")

    @model_validator(mode="before")
    @classmethod
    def _image_shorthand(cls, value: object) -> object:
        """`image: NAME` is short for `rootfs: {type: image, image: NAME}`; it replaces a store image's rootfs (so a
        merge patch `{container: {image: OTHER}}` on a stored spec switches images)."""
        if isinstance(value, dict) and "image" in value:
            rootfs = value.get("rootfs")
            if rootfs is not None and not (isinstance(rootfs, dict) and rootfs.get("type") == "image"):
                raise ValueError("give container.image or container.rootfs, not both")
            if not isinstance(value["image"], str) or not re.match(IMAGE_NAME_PATTERN, value["image"]):
                raise ValueError(f"image {value['image']!r} is not an image name (letters, digits, '.', '_', '-')")
            value = dict(value)
            value["rootfs"] = {"type": "image", "image": value.pop("image")}
        return value

    @field_validator("workdir")
    @classmethod
    def _absolute_workdir(cls, value: Path | None) -> Path | None:
        return None if value is None else absolute_path(value)

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [name for name in value if not re.match(ENV_NAME_PATTERN, name)]
        if bad:
            raise ValueError(f"environment variable names are letters, digits and '_': {', '.join(bad)}")
        return value
