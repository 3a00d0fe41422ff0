"""What the host must offer a container spec: runc, the cgroup controllers for its limits, its paths and networks."""

import shutil
from pathlib import Path

from vmhost.drivers.runc import image
from vmhost.render.oci import ImageConfig, process_args
from vmhost.render.oci.config import NETNS_DIR
from vmhost.spec import VMSpec
from vmhost.spec.container import Container, DirectoryRootfs, ImageRootfs

CGROUP_ROOT = Path("/sys/fs/cgroup")
SYS_NET = Path("/sys/class/net")


def cgroup_controllers(root: Path = CGROUP_ROOT) -> set[str]:
    """Controllers a container's limits can use: cgroup v2's list, or the v1 hierarchies mounted (hybrid too)."""
    unified = root / "cgroup.controllers"
    if unified.is_file():
        return set(unified.read_text().split())
    controllers: set[str] = set()
    for hierarchy in root.iterdir() if root.is_dir() else []:
        if (hierarchy / "cgroup.procs").is_file() and not hierarchy.is_symlink():
            controllers |= set(hierarchy.name.split(","))
    return controllers


def limit_problems(controllers: set[str]) -> list[tuple[str, str]]:
    problems = []
    if "memory" not in controllers:
        problems.append(("memory.size", "this host's cgroups cannot enforce a memory limit (no memory controller)"))
    if "cpu" not in controllers:
        problems.append(("cpu.vcpus", "this host's cgroups cannot enforce a CPU limit (no cpu controller)"))
    return problems


def rootfs_problems(container: Container, unpacked: ImageConfig | None) -> list[tuple[str, str]]:
    """`unpacked` is the image config of a layout define already unpacked: it is not read again."""
    rootfs = container.rootfs
    layout = image.source(rootfs)
    if isinstance(rootfs, ImageRootfs) and layout is None:
        return []  # not in the image store: the engine's resolution says so (engine/image_pull.py)
    if layout is not None:
        if unpacked is None:
            try:
                unpacked = image.inspect(*layout).config
            except image.ImageError as exc:
                where = "image" if isinstance(rootfs, ImageRootfs) else "path"
                return [(f"container.rootfs.{where}", exc.message)]
    elif isinstance(rootfs, DirectoryRootfs) and not rootfs.path.is_dir():
        return [("container.rootfs.path", f"{rootfs.path} is not a directory on this host")]
    if not process_args(container, unpacked or ImageConfig()):
        return [("container.command", "no command is given and the image defines none")]
    return []


def mount_problems(container: Container) -> list[tuple[str, str]]:
    return [
        (f"container.mounts.{index}.source", f"{mount.source} does not exist on this host")
        for index, mount in enumerate(container.mounts)
        if not mount.source.exists()
    ]


def network_problems(container: Container) -> list[tuple[str, str]]:
    network = container.network
    if network.bridge is not None and not (SYS_NET / network.bridge / "bridge").is_dir():
        return [("container.network.bridge", f"bridge {network.bridge} does not exist on this host")]
    if network.netns is not None and not (NETNS_DIR / network.netns).exists():
        return [("container.network.netns", f"network namespace {network.netns} does not exist (ip netns add)")]
    return []


def problems(spec: VMSpec, runc: str, unpacked: ImageConfig | None) -> list[tuple[str, str]]:
    container = spec.container
    if spec.kind != "container" or container is None:
        return [("kind", "the runc driver runs containers only (kind: container)")]
    found = [] if shutil.which(runc) else [("kind", f"runc ({runc}) is not installed on this host")]
    found += rootfs_problems(container, unpacked)
    found += mount_problems(container)
    found += network_problems(container)
    return found + limit_problems(cgroup_controllers())
