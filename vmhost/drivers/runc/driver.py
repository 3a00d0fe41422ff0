"""RuncDriver: the Driver protocol for `kind: container` specs, on the runc CLI (argv lists, its own --root).

Where things live:
- `<state_dir>/runc/`: runc's --root (its state.json per running container);
- `<state_dir>/index/<name>`: a symlink to the container's files, how a name is found after an agent restart;
- `<VM dir>/container/`: the definition (spec + owner, for adoption), the OCI bundle (config.json, and the
  unpacked rootfs for an image), and the shim's files (init pid, exit status, runc's log);
- the container's stdout/stderr: the VM's console log (spec.console.log_file or the VM dir's console.log).

A container has no "defined but stopped" object in runc: the definition file is that, so a defined container
that does not run is SHUTOFF (or CRASHED, from the exit status the shim kept), never ABSENT.
Two-phase start: create_paused = shim + `runc create` (+ the veth into its bridge); resume = `runc start`.
"""

import contextlib
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from vmhost.drivers import processes
from vmhost.drivers.base import (
    Capability,
    ConsoleStream,
    DomainInfo,
    DomainState,
    DomainStats,
    GuestAddresses,
    HostFacts,
    HostInfo,
    NicIO,
    Recorded,
    Resources,
)
from vmhost.drivers.cpuinfo import os_host_facts
from vmhost.drivers.netstats import host_end_io
from vmhost.drivers.no_migration import NoMigration
from vmhost.drivers.no_snapshots import NoSnapshots
from vmhost.drivers.runc import host, image, launch, network, shim
from vmhost.drivers.runc import state as runc_state
from vmhost.drivers.runc.network import write_resolv_conf
from vmhost.errors import Conflict, HostResourceError, HypervisorError, NotFound, Unsupported, VmhostError
from vmhost.host import commands
from vmhost.host.files import atomic_write, fsync_dir, private_dir
from vmhost.render.hooks import DocumentHook
from vmhost.render.oci import ImageConfig, render_config
from vmhost.spec import VMSpec
from vmhost.spec.container import ContainerNetwork, DirectoryRootfs
from vmhost.spec.graphics import REVEAL_SECRETS
from vmhost.spec.units import parse_size

RUNC_TIMEOUT = 30.0
SHIM_EXIT_WAIT = 10.0
DEFINITION = "definition.json"
IMAGE = "image.json"
DEFAULT_OCI_VERSION = "1.0.2"


class RuncDriver(NoSnapshots, NoMigration):
    kind = "runc"
    migration_hint = "runc checkpoint/restore (CRIU) is not wired in; stop the container, create it on the other host"
    snapshot_hint = "containers have no disk images to snapshot; keep state in container.mounts and back those up"
    capabilities = frozenset({Capability.PAUSE})
    """runc pause/resume freeze the cgroup; a container has no reboot, console stream, disks or PCI devices."""

    def __init__(self, runc: str, state_dir: Path, render_hooks: tuple[DocumentHook, ...] = ()):
        """render_hooks: plugins' render_oci hooks, applied to every config.json."""
        self.runc = runc
        self.render_hooks = render_hooks
        self.state_dir = state_dir
        self.runc_root = state_dir / "runc"
        self.index = state_dir / "index"
        self._oci_version: str | None = None

    # ---- files -------------------------------------------------------------------------------

    def _files(self, name: str) -> Path | None:
        link = self.index / name
        return link.resolve() if link.is_symlink() and link.resolve().is_dir() else None

    def _defined(self, name: str) -> Path:
        files = self._files(name)
        if files is None:
            raise NotFound(f"runc has no container named {name}")
        return files

    def _definition(self, name: str) -> dict[str, Any]:
        try:
            definition: dict[str, Any] = json.loads((self._defined(name) / DEFINITION).read_text())
        except (OSError, ValueError) as exc:
            raise NotFound(f"the definition of container {name} is unreadable: {exc}") from None
        return definition

    # ---- runc --------------------------------------------------------------------------------

    def _runc(self, name: str, action: str, *args: str) -> str:
        return commands.run(
            [self.runc, "--root", str(self.runc_root), *args],
            RUNC_TIMEOUT,
            translate=lambda done: HypervisorError(f"runc could not {action} {name}", done.stderr.strip()),
            missing=f"runc ({self.runc}) is not installed on this host",
            timed_out=lambda: HypervisorError(f"runc did not {action} {name} within {RUNC_TIMEOUT:.0f}s"),
        ).stdout

    def oci_version(self) -> str:
        """The runtime-spec version the installed runc implements (`runc --version`: "spec: 1.0.2-dev")."""
        if self._oci_version is None:
            output = ""
            with contextlib.suppress(VmhostError):
                output = commands.run([self.runc, "--version"], RUNC_TIMEOUT).stdout
            found = re.search(r"^spec: (\S+)", output, re.MULTILINE)
            self._oci_version = found.group(1) if found else DEFAULT_OCI_VERSION
        return self._oci_version

    # ---- host --------------------------------------------------------------------------------

    def host_info(self) -> HostInfo:
        meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        return HostInfo(
            hypervisor=f"runc (OCI runtime-spec {self.oci_version()})",
            cpus=os.cpu_count() or 1,
            memory_total=int(meminfo["MemTotal"].split()[0]) * 1024,
            memory_available=int(meminfo["MemAvailable"].split()[0]) * 1024,
            accel="none",
        )

    def host_facts(self) -> HostFacts:
        return os_host_facts(self.host_info().memory_total, {"oci-runtime-spec": self.oci_version()})

    def host_problems(self, spec: VMSpec) -> list[tuple[str, str]]:
        return host.problems(spec, self.runc, self._unpacked(spec))

    def _unpacked(self, spec: VMSpec) -> ImageConfig | None:
        """The image config of the layout this container already unpacked, if it is still the spec's."""
        files = self._files(spec.name)
        layout = image.source(spec.container.rootfs) if spec.container else None
        if files is None or layout is None:
            return None
        with contextlib.suppress(OSError, ValueError, KeyError):
            unpacked = json.loads((files / IMAGE).read_text())
            if (unpacked["path"], unpacked["ref"]) == (str(layout[0]), layout[1]):
                return ImageConfig(**unpacked["config"])
        return None

    # ---- definition --------------------------------------------------------------------------

    def define(self, spec: VMSpec, resources: Resources) -> None:
        """Write the bundle and the definition; an image is unpacked once (again only when the spec's changes)."""
        if spec.container is None:
            raise HypervisorError(f"{spec.name} is not a container spec; the runc driver runs containers only")
        files = resources.console_log.parent / "container"
        bundle = files / "bundle"
        private_dir(files)  # root only: the env in config.json, and the image's setuid files in the rootfs
        private_dir(bundle)
        rootfs, config = self._rootfs(spec, files)
        resolv = write_resolv_conf(spec.container, bundle)
        document = render_config(spec, rootfs, config, self.oci_version(), hooks=self.render_hooks, resolv_conf=resolv)
        atomic_write(bundle / "config.json", json.dumps(document, indent=2))
        definition = {
            "spec": spec.model_dump(mode="json", context={REVEAL_SECRETS: True}),
            "owner": resources.owner,
            "log": str(spec.console.log_file or resources.console_log),
        }
        atomic_write(files / DEFINITION, json.dumps(definition))
        private_dir(self.state_dir)  # runc's state.json holds the container's environment too
        private_dir(self.index)
        link = self.index / spec.name
        if not (link.is_symlink() and link.resolve() == files.resolve()):
            link.unlink(missing_ok=True)
            link.symlink_to(files.resolve())
            fsync_dir(self.index)

    def _rootfs(self, spec: VMSpec, files: Path) -> tuple[Path, ImageConfig]:
        assert spec.container is not None
        source = spec.container.rootfs
        layout = image.source(source)
        if isinstance(source, DirectoryRootfs):
            shutil.rmtree(files / "bundle" / "rootfs", ignore_errors=True)
            (files / IMAGE).unlink(missing_ok=True)
            return source.path, ImageConfig()
        if layout is None:
            raise HostResourceError(f"container.rootfs.image: {spec.name}'s image was not resolved in the image store")
        rootfs = files / "bundle" / "rootfs"
        unpacked = self._unpacked(spec)
        if unpacked is not None and rootfs.is_dir():
            return rootfs, unpacked
        shutil.rmtree(rootfs, ignore_errors=True)
        (files / IMAGE).unlink(missing_ok=True)
        unpacked_image = image.unpack(*layout, rootfs)
        record = {
            "path": str(layout[0]),
            "ref": layout[1],
            "digest": unpacked_image.manifest_digest,
            "config": vars(unpacked_image.config),
        }
        atomic_write(files / IMAGE, json.dumps(record))
        return rootfs, unpacked_image.config

    def undefine(self, name: str) -> None:
        """Remove the container from runc (killing it if it runs) and every file this driver wrote."""
        files = self._files(name)
        if files is None:
            (self.index / name).unlink(missing_ok=True)
            return
        self._remove_from_runc(name, files)
        shutil.rmtree(files, ignore_errors=True)
        (self.index / name).unlink(missing_ok=True)

    def _remove_from_runc(self, name: str, files: Path) -> None:
        atomic_write(files / runc_state.STOP_REQUESTED, b"")
        if runc_state.runc_knows(self.runc_root, name):
            self._runc(name, "delete", "delete", "--force", name)
        self._wait_for_shim(files)
        self._unplug(name)

    def _wait_for_shim(self, files: Path) -> None:
        """The shim writes the exit status and leaves; nothing of the container may outlive a stop or delete."""
        deadline = time.monotonic() + SHIM_EXIT_WAIT
        while runc_state.shim_alive(files) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _unplug(self, name: str) -> None:
        spec = self._definition(name)["spec"]
        if spec["container"]["network"]["mode"] == "bridge":
            network.unplug(network.veth_name(spec["uuid"].replace("-", "")))

    # ---- start -------------------------------------------------------------------------------

    def create_paused(self, name: str) -> None:
        """The shim runs `runc create`: the container's init exists, waiting to exec the workload."""
        files = self._defined(name)
        private_dir(files)  # also for a container defined by a version that left its files 0755
        if runc_state.live(self.runc_root, name) is not None:
            raise Conflict(f"container {name} is already running")
        if runc_state.runc_knows(self.runc_root, name):
            self._runc(name, "delete the stopped container", "delete", "--force", name)
        self._wait_for_shim(files)
        for leftover in (shim.EXIT_FILE, shim.PID_FILE, shim.SHIM_PID_FILE, runc_state.STOP_REQUESTED):
            (files / leftover).unlink(missing_ok=True)
        definition = self._definition(name)
        pid = launch.spawn_shim(self.runc, self.runc_root, name, files, Path(definition["log"]))
        container = definition["spec"]["container"]
        if container["network"]["mode"] == "bridge":
            try:
                host_end = network.veth_name(definition["spec"]["uuid"].replace("-", ""))
                network.plug(host_end, container["network"]["bridge"], pid, ContainerNetwork(**container["network"]))
            except VmhostError:
                with contextlib.suppress(VmhostError):
                    self._remove_from_runc(name, files)
                raise

    def resume(self, name: str) -> None:
        """`runc start` for a created container, `runc resume` for a paused one; a running one is left alone."""
        current = runc_state.live(self.runc_root, name)
        if current is None:
            raise Conflict(f"container {name} is not running")
        if current.created:
            self._runc(name, "start", "start", name)
        elif current.frozen:
            self._runc(name, "resume", "resume", name)

    def pause(self, name: str) -> None:
        self._runc(name, "pause", "pause", name)

    # ---- stop --------------------------------------------------------------------------------

    def _signal(self, name: str, signal_name: str) -> None:
        files = self._defined(name)
        atomic_write(files / runc_state.STOP_REQUESTED, b"")
        current = runc_state.live(self.runc_root, name)
        if current is None:
            return
        self._runc(name, f"send SIG{signal_name} to", "kill", name, signal_name)
        if current.frozen:
            self._runc(name, "thaw", "resume", name)  # a frozen process cannot act on the signal

    def request_shutdown(self, name: str) -> None:
        """SIGTERM to the container's init; the engine forces the stop at its deadline."""
        self._signal(name, "TERM")

    def destroy(self, name: str) -> None:
        """SIGKILL to the init (its pid namespace dies with it, so no --all); idempotent."""
        self._signal(name, "KILL")

    def request_reboot(self, name: str) -> None:
        raise Unsupported(self.kind, Capability.REBOOT, f"stop and start {name} instead")

    def reset(self, name: str) -> None:
        raise Unsupported(self.kind, Capability.REBOOT, f"stop and start {name} instead")

    def kill_process(self, name: str) -> bool:
        files = self._files(name)
        current = runc_state.live(self.runc_root, name)
        if files is None or current is None:
            return False
        atomic_write(files / runc_state.STOP_REQUESTED, b"")
        return processes.sigkill(current.pid)

    def interfaces(self, name: str) -> list[str]:
        """The host end of the veth pair of a created bridge-mode container (a container has at most one)."""
        spec = self._definition(name)["spec"]
        if spec["container"]["network"]["mode"] != "bridge" or runc_state.live(self.runc_root, name) is None:
            return []
        return [network.veth_name(spec["uuid"].replace("-", ""))]

    def guest_addresses(self, name: str) -> dict[str, GuestAddresses]:
        """A container's addresses are what its spec configures; nothing here observes them."""
        return {}

    # ---- state -------------------------------------------------------------------------------

    def state(self, name: str) -> DomainState:
        files = self._files(name)
        return DomainState.ABSENT if files is None else runc_state.state(self.runc_root, name, files)

    def states(self) -> dict[str, DomainState]:
        names = [entry.name for entry in os.scandir(self.index)] if self.index.is_dir() else []
        return {name: state for name in names if (state := self.state(name)) != DomainState.ABSENT}

    def info(self, name: str) -> DomainInfo:
        spec = self._definition(name)["spec"]
        current = runc_state.live(self.runc_root, name)
        return DomainInfo(
            name=name,
            uuid=spec["uuid"],
            state=self.state(name),
            vcpus=spec["cpu"]["vcpus"],
            memory_bytes=parse_size(spec["memory"]["size"]),
            cpu_time_ns=runc_state.cpu_time(current.cgroups) if current else 0,
            pid=current.pid if current else None,
        )

    def list_owned(self) -> list[DomainInfo]:
        owned = []
        for name in self.states():
            with contextlib.suppress(NotFound):
                owned.append(self.info(name))
        return owned

    def domain_stats(self) -> list[DomainStats]:
        """The cgroup's CPU time; while it runs, the spec's vCPUs and memory (the container's limits) and the
        I/O of its veth (bridge mode), read at the host end."""
        return [
            DomainStats(
                name=info.name,
                state=info.state,
                cpu_seconds=info.cpu_time_ns / 1e9,
                vcpus=info.vcpus if info.pid is not None else None,
                memory_bytes=info.memory_bytes if info.pid is not None else None,
                nics=self._nic_io(info.name),
            )
            for info in self.list_owned()
        ]

    def _nic_io(self, name: str) -> tuple[NicIO, ...]:
        """Nothing for a container deleted since it was listed."""
        try:
            devices = self.interfaces(name)
        except NotFound:
            return ()
        return tuple(io for device in devices if (io := host_end_io(device)) is not None)

    def recorded(self, name: str) -> Recorded | None:
        definition = self._definition(name)
        return Recorded(spec=definition["spec"], owner=definition["owner"])

    # ---- what containers do not have ---------------------------------------------------------

    def open_console(self, name: str) -> ConsoleStream:
        raise Unsupported(self.kind, Capability.CONSOLE, f"its output is in its log: vmhost console {name} --log")

    def graphics_ports(self, name: str) -> dict[str, int]:
        return {}

    def attach_disk(self, spec: VMSpec, resources: Resources, target: str) -> None:
        raise Unsupported(self.kind, Capability.DISK_HOTPLUG, "containers have no disks; use container.mounts")

    def detach_disk(self, spec: VMSpec, resources: Resources, target: str) -> None:
        raise Unsupported(self.kind, Capability.DISK_HOTPLUG, "containers have no disks")

    def attach_nic(self, spec: VMSpec, resources: Resources, mac: str) -> None:
        raise Unsupported(self.kind, Capability.NIC_HOTPLUG, f"stop {spec.name} to add NIC {mac}")

    def detach_nic(self, spec: VMSpec, resources: Resources, mac: str, timeout: float) -> None:
        raise Unsupported(self.kind, Capability.NIC_HOTPLUG, f"stop {spec.name} to remove NIC {mac}")

    def set_vcpus(self, name: str, count: int) -> None:
        raise Unsupported(self.kind, Capability.VCPU_HOTPLUG, f"stop {name} to change its CPU limit")

    def set_memory(self, spec: VMSpec, resources: Resources, size: int) -> None:
        raise Unsupported(self.kind, Capability.MEMORY_HOTPLUG, f"stop {spec.name} to change its memory limit")

    def resize_disk(self, name: str, target: str, size: int) -> None:
        raise Unsupported(self.kind, Capability.DISK_RESIZE, "containers have no disks; use container.mounts")

    def change_media(self, spec: VMSpec, resources: Resources, target: str) -> None:
        raise Unsupported(self.kind, Capability.MEDIA_CHANGE, "containers have no CD-ROM drives")

    def reserve_pci(self, address: str) -> None:
        raise Unsupported(self.kind, Capability.PCI_PASSTHROUGH, f"{address} cannot be given to a container")

    def release_pci(self, address: str) -> None:
        raise Unsupported(self.kind, Capability.PCI_PASSTHROUGH, f"{address} cannot be given to a container")
