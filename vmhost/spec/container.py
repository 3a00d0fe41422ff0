"""A container workload (`kind: container`): rootfs, process, mounts, hostname and network, run by an OCI runtime."""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from vmhost.spec.base import SpecModel


class DirectoryRootfs(SpecModel):
    type: Literal["directory"] = "directory"
    path: Path = Field(description="An unpacked root filesystem on the host (used in place, never modified).")


class OciLayoutRootfs(SpecModel):
    type: Literal["oci-layout"]
    path: Path = Field(description="A local OCI image layout directory, or a tarball of one.")
    ref: str = Field("latest", description="The image's org.opencontainers.image.ref.name in the layout's index.")


Rootfs = Annotated[DirectoryRootfs | OciLayoutRootfs, Field(discriminator="type")]


class Mount(SpecModel):
    source: Path = Field(description="Host path, bind-mounted.")
    target: Path = Field(description="Absolute path inside the container.")
    read_only: bool = Field(False, description="Mount read-only.")


class ContainerNetwork(SpecModel):
    mode: Literal["none", "bridge", "netns"] = Field(
        "none",
        description="none: loopback only; bridge: a veth pair into `bridge`; netns: join the named network namespace.",
    )
    bridge: str | None = Field(None, description="Host bridge for mode bridge.")
    netns: str | None = Field(None, description="Network namespace name (ip netns) for mode netns.")


class Container(SpecModel):
    """What runs and how; memory and cpu limits come from the spec's memory and cpu blocks."""

    rootfs: Rootfs
    command: list[str] = Field(default_factory=list, description="Entrypoint; default: the image's.")
    args: list[str] = Field(default_factory=list, description="Arguments after the command; default: the image's.")
    env: dict[str, str] = Field(default_factory=dict, description="Environment, added to the image's.")
    workdir: Path | None = Field(None, description="Working directory inside the container; default: the image's.")
    hostname: str | None = Field(None, description="Default: the spec's name.")
    mounts: list[Mount] = Field(default_factory=list, description="Bind mounts.")
    network: ContainerNetwork = Field(default_factory=ContainerNetwork, description="Network attachment.")
