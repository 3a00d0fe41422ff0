"""Durable, private files and directories: how vmhost writes state a power loss must not corrupt or lose, and
how it keeps VM data away from local users.

A state file is replaced atomically (temporary file in the same directory, fsync, rename, fsync of the
directory): after a crash the reader sees the old content or the new, never a torn or empty file.
"""

import contextlib
import grp
import os
import stat
import tempfile
from pathlib import Path
from typing import IO

PRIVATE_FILE = 0o600
"""Definitions, bundles, records: they hold specs, environment variables and display passwords."""
LOG_FILE = 0o640
"""Console and container logs: root (and the group that reads them) only, never other users."""
PRIVATE_DIR = 0o700
TRAVERSE_ONLY_DIR = 0o711
HYPERVISOR_DIR = 0o710
"""root rwx, the hypervisor's group traverse only (QEMU opens its disks by path, it never lists), others nothing."""


def fsync_dir(directory: Path) -> None:
    """Make a rename, unlink or symlink in `directory` survive a power loss."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def atomic_write(path: Path, data: str | bytes, mode: int = PRIVATE_FILE) -> None:
    """Replace `path` with `data` (mode `mode` from the first byte on); on failure nothing is left behind."""
    payload = data.encode() if isinstance(data, str) else data
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as stream:
            os.fchmod(stream.fileno(), mode)
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    fsync_dir(path.parent)


def open_log(path: Path) -> IO[bytes]:
    """Open a log for appending; a log made here is created 0640 (an existing one keeps its mode)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, LOG_FILE), "ab")


def private_dir(path: Path, mode: int = PRIVATE_DIR, group: int | None = None) -> None:
    """Make `path` (its parent must exist) and set its mode and group, also when it already existed with looser
    ones (directories made by older versions)."""
    path.mkdir(exist_ok=True, mode=mode & 0o777)
    if group is not None:
        os.chown(path, -1, group)
    os.chmod(path, mode)


def inherited_dir(path: Path) -> None:
    """Make `path` with its parent's mode and group: the directories on the way to a VM's disks all let the
    hypervisor through, and nobody else."""
    parent = path.parent.stat()
    private_dir(path, stat.S_IMODE(parent.st_mode), parent.st_gid)


def hypervisor_access(group: str) -> tuple[int, int | None]:
    """Mode and gid for the directories QEMU must traverse, for QEMU running with the group `group`.

    No group (QEMU runs as root): 0700. A group this host lacks: 0711, traversable by anyone but listable by
    nobody, so QEMU still reaches its disks (the files themselves stay 0600/0640).
    """
    if not group:
        return PRIVATE_DIR, None
    gid = group_id(group)
    return (HYPERVISOR_DIR, gid) if gid is not None else (TRAVERSE_ONLY_DIR, None)


def group_id(name: str) -> int | None:
    """The gid of a group, or None when this host has no such group."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None
