"""Measurement 8: a VM from an image, through vmhost vs the same steps by hand, up to "domain running".

vmhost: POST /v1/vms?wait=true with `disks: [{image, size: 4GiB}]`, a NIC with a static address and a
`cloud_init` block (the agent makes the qcow2 overlay and the NoCloud seed ISO), then POST start?wait=true.
By hand: `qemu-img create -b IMAGE` (4 GiB overlay), `cloud-localds` (seed ISO from the same three files the
agent's seed holds) and `virsh create` of the agent's domain XML pointed at those two files.
The Debian cloud image of scripts/debian-image.sh is the image; it is not booted to SSH, only started.
"""

import shutil
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import (
    DEBIAN_DIR,
    FULL,
    PREFIX,
    QUICK,
    Api,
    BenchError,
    Made,
    Series,
    Session,
    Settings,
    Workspace,
    fmt,
    make_workspace,
    progress,
    run,
    timed,
    virsh,
)

IMAGE = "bench-debian-12"
SIZE = "4GiB"
SEED_FILES = ("meta-data", "user-data", "network-config")


@dataclass
class FromImageResult:
    agent: Series
    raw: Series
    create: Series
    """The agent's share spent in POST /v1/vms (overlay, seed, define); the rest is the start."""
    virsh_create: Series
    """The by-hand share spent in `virsh create`; the rest is qemu-img and cloud-localds."""

    def table_row(self) -> list[str]:
        ratio = self.agent.median / self.raw.median
        return [
            "8",
            f"create from image + start, median of {len(self.agent.values)}",
            f"API {fmt(self.agent.median)}",
            f"qemu-img+cloud-localds+virsh {fmt(self.raw.median)}",
            f"agent/raw {ratio:.3f}",
            "<= 1.10",
            "ok" if ratio <= 1.10 else "MISSED",
        ]

    def raw_lines(self) -> list[tuple[str, str]]:
        return [
            ("8  API create + start from image", self.agent.describe()),
            ("8    of which POST /v1/vms", self.create.describe()),
            ("8  by hand", self.raw.describe()),
            ("8    of which virsh create", self.virsh_create.describe()),
        ]


def preflight_image() -> None:
    for file in ("disk.qcow2", "vmlinuz", "initrd.img", "cmdline"):
        if not (DEBIAN_DIR / file).is_file():
            raise BenchError(f"{DEBIAN_DIR / file} is missing: run scripts/debian-image.sh (scripts/setup.sh does)")
    for tool in ("cloud-localds", "qemu-img", "isoinfo", "ssh-keygen"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} is missing: run scripts/setup.sh")


def bench_from_image(api: Api, workspace: Workspace, made: Made, settings: Settings) -> FromImageResult:
    """Interleaved rounds, one warm-up each side; after each: the VM deleted / the domain destroyed, files gone."""
    runs = 9 if settings.mode == "full" else 1  # cheap rounds (~2 s each side), and a noisy host
    bridge = f"vmhbb-{PREFIX.split('-')[1][:4]}"
    run(["ip", "link", "add", bridge, "type", "bridge"])
    try:
        api.call("POST", "/v1/images?wait=true", {"source": str(DEBIAN_DIR / "disk.qcow2"), "name": IMAGE})
        base = Path(api.call("GET", f"/v1/images/{IMAGE}")["path"])
        spec = _spec(PREFIX + "img", bridge, _public_key(workspace))
        made.agent_vms.append(spec["name"])  # cleanup deletes it if a round fails half-way
        by_hand = _HandMade(workspace, spec, base)
        result = FromImageResult(Series(), Series(), Series(), Series())
        for index in range(runs + 1):
            progress(f"create from image {index}/{runs}")
            began = time.perf_counter()
            api.create(spec)
            create_seconds = time.perf_counter() - began
            api.start(spec["name"])
            agent_seconds = time.perf_counter() - began
            if index == 0:
                by_hand.capture()
            api.kill(spec["name"])
            api.delete(spec["name"])
            time.sleep(0.3)
            began = time.perf_counter()
            virsh_seconds = by_hand.create()
            raw_seconds = time.perf_counter() - began
            by_hand.destroy()
            if index > 0:
                result.agent.values.append(agent_seconds)
                result.create.values.append(create_seconds)
                result.virsh_create.values.append(virsh_seconds)
                result.raw.values.append(raw_seconds)
        return result
    finally:
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)  # noqa: S603


def _spec(name: str, bridge: str, key: str) -> dict[str, Any]:
    return {
        "name": name,
        "memory": "256MiB",
        "boot": {
            "kernel": {
                "kernel": str(DEBIAN_DIR / "vmlinuz"),
                "initrd": str(DEBIAN_DIR / "initrd.img"),
                "cmdline": (DEBIAN_DIR / "cmdline").read_text().strip(),
            }
        },
        "disks": [{"image": IMAGE, "size": SIZE}],
        "nics": [
            {
                "type": "bridge",
                "source": bridge,
                "addresses": ["10.213.9.10/24"],
                "gateway4": "10.213.9.1",
                "dns": {"nameservers": ["192.0.2.53", "198.51.100.53"]},
            }
        ],
        "cloud_init": {"hostname": "bench", "users": [{"name": "bench", "ssh_authorized_keys": [key]}]},
        "guest_agent": False,
    }


def _public_key(workspace: Workspace) -> str:
    key = workspace.root / "bench_ed25519"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)])
    return key.with_suffix(".pub").read_text().strip()


class _HandMade:
    """The baseline: the agent's domain XML and seed files, captured once, replayed with the tools by hand."""

    def __init__(self, workspace: Workspace, spec: dict[str, Any], base: Path):
        self.spec, self.base = spec, base
        self.dir = workspace.raw_dir / "from-image"
        self.name = PREFIX + "raw-img"
        self.xml_file = self.dir / "domain.xml"
        self.overlay, self.seed = self.dir / "vda.qcow2", self.dir / "seed.iso"

    def capture(self) -> None:
        """From the agent's running VM: its XML with our two files in place of its own, and its seed's files."""
        self.dir.mkdir(mode=0o711)
        root = ET.fromstring(virsh("dumpxml", "--inactive", self.spec["name"]))
        agent_seed = None
        for disk in root.iter("disk"):
            source = disk.find("source")
            if source is None:
                continue
            if disk.get("device") == "cdrom":
                agent_seed = source.get("file")
                source.set("file", str(self.seed))
            else:
                source.set("file", str(self.overlay))
        if agent_seed is None:
            raise BenchError("the agent's domain has no seed CD-ROM")
        for name in SEED_FILES:
            text = run(["isoinfo", "-i", agent_seed, "-J", "-x", f"/{name}"])
            (self.dir / name).write_text(text)
        _set(root, "name", self.name)
        _set(root, "uuid", str(uuid.uuid4()))
        metadata = root.find("metadata")
        if metadata is not None:
            root.remove(metadata)
        for log in root.iter("log"):
            log.set("file", str(self.dir / "console.log"))
        self.xml_file.write_text(ET.tostring(root, encoding="unicode"))

    def create(self) -> float:
        """The three steps; returns the seconds `virsh create` took."""
        size = SIZE.removesuffix("iB")
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(self.base), str(self.overlay), size])
        files = [str(self.dir / name) for name in ("user-data", "meta-data")]
        run(["cloud-localds", "-N", str(self.dir / "network-config"), str(self.seed), *files])
        return timed(lambda: virsh("create", str(self.xml_file)))

    def destroy(self) -> None:
        virsh("destroy", self.name)
        time.sleep(0.3)
        self.overlay.unlink()
        self.seed.unlink()


def _set(root: ET.Element, tag: str, text: str) -> None:
    element = root.find(tag)
    if element is None:
        raise BenchError(f"domain XML has no <{tag}>")
    element.text = text


def main() -> int:
    """Only this measurement, with its own agent: `.venv/bin/python bench/from_image.py [--quick]`."""
    from run import cleanup, host_activity, machine, preflight, render_table  # noqa: PLC0415 - run imports us

    settings = QUICK if "--quick" in sys.argv[1:] else FULL
    session = Session(workspace=make_workspace())
    try:
        preflight(scale=False)
        session.start_agent()
        assert session.api is not None and session.workspace is not None
        before = host_activity("before")
        result = bench_from_image(session.api, session.workspace, session.made, settings)
        activity = [before, host_activity("after")]
    except BenchError as exc:
        tail = session.agent.log_tail() if session.agent is not None else ""
        print(f"error: {exc}\nagent log (last lines):\n{tail}", file=sys.stderr)
        return 1
    finally:
        cleanup(session)
    header = ["#", "measurement", "vmhost", "baseline", "result", "target", "verdict"]
    lines = [*machine(), "host activity: " + "; ".join(activity), "", render_table([header, result.table_row()])]
    print("\n".join([*lines, "", *(f"  {label}  {text}" for label, text in result.raw_lines())]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
