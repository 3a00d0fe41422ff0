"""The NoCloud seed ISO (ISO 9660 + Joliet + Rock Ridge, volume `cidata`) a VM's cloud-init reads.

Built with genisoimage (Debian package genisoimage, what cloud-image-utils' cloud-localds runs underneath): a
maintained ISO writer, called directly so no shell wrapper sits between vmhost and it.
"""

import shutil
import tempfile
from pathlib import Path

import yaml

from vmhost.errors import HostResourceError
from vmhost.host import commands, files
from vmhost.render.cloudinit import VOLUME_ID, Seed

GENISOIMAGE = "genisoimage"
TIMEOUT = 60.0


def write_seed(seed: Seed, path: Path) -> None:
    """Replace `path` atomically with an ISO holding the seed's files: root-only (0600) like the VM's other
    owned files (libvirt hands it to QEMU's user while the VM runs); on failure nothing is left behind."""
    work = Path(tempfile.mkdtemp(dir=path.parent, prefix=".seed-"))
    try:
        names = []
        for name, text in seed.files().items():
            files.atomic_write(work / name, text)
            names.append(str(work / name))
        iso = work / "seed.iso"
        argv = [GENISOIMAGE, "-quiet", "-output", str(iso), "-volid", VOLUME_ID, "-joliet", "-rock", *names]
        commands.run(
            argv,
            TIMEOUT,
            translate=lambda done: HostResourceError("genisoimage could not build the seed ISO", detail=done.stderr),
            missing="genisoimage is not installed (Debian package genisoimage)",
            timed_out=lambda: HostResourceError(f"genisoimage did not finish within {TIMEOUT:g}s"),
        )
        files.atomic_write(path, iso.read_bytes())
    finally:
        shutil.rmtree(work, ignore_errors=True)


def password_hashes(path: Path) -> dict[str, str]:
    """The users' password hashes a seed holds (the hypervisor's copy of the spec masks them): name -> hash.
    Empty when there is no seed or it cannot be read."""
    if not path.is_file():
        return {}
    done = commands.run(["isoinfo", "-J", "-x", "/user-data", "-i", str(path)], TIMEOUT)
    try:
        document = yaml.safe_load(done.stdout) if done.returncode == 0 else None
    except yaml.YAMLError:
        return {}
    users = document.get("users") if isinstance(document, dict) else None
    return {
        str(user["name"]): str(user["passwd"])
        for user in users or []
        if isinstance(user, dict) and "name" in user and "passwd" in user
    }
