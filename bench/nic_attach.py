"""NIC hot-plug: vmhost's attach vs raw `virsh attach-device --live` of the same <interface> XML.

Two tiny guests alike, booted side by side: one made by vmhost (an in-process Engine on its own data dir), one its
raw twin defined and started with virsh. Each round, interleaved, plugs the same NIC into each and times the call;
the NIC is then unplugged again (untimed, waiting until the guest released it). The raw side is timed twice:
`--live` (what the issue names) and `--live --config`, which like vmhost also makes the NIC persistent (vmhost's
live update redefines the domain and records the change). vmhost's side goes through
`Engine.update(..., live=True)` when the engine has live updates, else through the driver's attach_nic (what the
engine's live step calls). libvirt-python's attachDeviceFlags on the raw twin is reported beside them, to show what
virsh's own process start and connect cost. Run 0 is a warm-up on both sides.

Alone:  .venv/bin/python bench/nic_attach.py [--rounds N]
"""

import argparse
import inspect
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import libvirt
from harness import (
    GUEST_DIR,
    PREFIX,
    URI,
    BenchError,
    Series,
    Workspace,
    fmt,
    guest_spec,
    make_workspace,
    progress,
    raw_copy,
    run,
    timed,
    virsh,
    wait_until,
)
from lxml import etree

from vmhost.config import HostConfig
from vmhost.drivers.select import build_drivers
from vmhost.engine import Engine
from vmhost.engine import resources as engine_resources
from vmhost.render.libvirt.nic import nic_element
from vmhost.spec import parse_spec

MAC = "52:54:00:be:0c:01"
BOOT_WAIT = 180.0
UNPLUG_WAIT = 60.0
TARGET = 1.10


@dataclass
class NicAttachResult:
    path: str
    """Which vmhost call was timed."""
    vmhost: Series
    virsh: Series
    virsh_config: Series
    libvirt: Series

    @property
    def ratio(self) -> float:
        """Against `virsh attach-device --live --config`: the same outcome (live and persistent) as vmhost's."""
        return self.vmhost.median / self.virsh_config.median

    def table_row(self, number: str = "8") -> list[str]:
        return [
            number,
            f"NIC attach (live + persistent), median of {len(self.vmhost.values)}",
            f"vmhost {fmt(self.vmhost.median)}",
            f"virsh attach-device --live --config {fmt(self.virsh_config.median)}",
            f"vmhost/virsh {self.ratio:.3f} (vs --live only {self.vmhost.median / self.virsh.median:.3f})",
            f"<= {TARGET:.2f}",
            "ok" if self.ratio <= TARGET else "MISSED",
        ]

    def raw_lines(self, number: str = "8") -> list[tuple[str, str]]:
        return [
            (f"{number}  NIC attach, vmhost ({self.path})", self.vmhost.describe()),
            (f"{number}  NIC attach, virsh attach-device --live", self.virsh.describe()),
            (f"{number}  NIC attach, virsh attach-device --live --config", self.virsh_config.describe()),
            (f"{number}  NIC attach, libvirt-python attachDeviceFlags", self.libvirt.describe()),
        ]


class _Pair:
    """The vmhost guest and its raw twin, on one test bridge; `close` removes all three."""

    def __init__(self, workspace: Workspace):
        self.bridge = f"vmhbn{PREFIX.split('-')[1]}"
        self.name, self.raw_name = PREFIX + "nic", PREFIX + "raw-nic"
        self.raw_log = workspace.raw_dir / f"{self.raw_name}.log"
        data_dir = workspace.root / "nic-data"
        data_dir.mkdir(mode=0o711)
        config = HostConfig(libvirt_uri=URI, data_dir=data_dir, accel="tcg", allowed_paths=(GUEST_DIR,))
        self.engine = Engine(config, build_drivers(config))
        self.conn = libvirt.open(URI)
        self.raw_started = False
        _ip("link", "add", "name", self.bridge, "type", "bridge")
        _ip("link", "set", self.bridge, "up")
        self.engine.create(guest_spec(self.name, "128MiB"), start=True)
        raw_xml = workspace.raw_dir / f"{self.raw_name}.xml"
        raw_xml.write_text(raw_copy(virsh("dumpxml", "--inactive", self.name), self.raw_name, self.raw_log))
        virsh("define", str(raw_xml))
        self.raw_started = True
        virsh("start", self.raw_name)
        self.nic = {"type": "bridge", "source": self.bridge, "mac": MAC}
        self.xml_file = workspace.raw_dir / "nic.xml"
        self.xml_file.write_text(
            etree.tostring(nic_element(parse_spec(self._spec([self.nic])).nics[0], "tcg")).decode()
        )

    def _spec(self, nics: list[dict[str, str]]) -> dict[str, object]:
        return {**self.engine.record(self.name).spec, "nics": nics}

    def wait_booted(self) -> None:
        for log in (self.engine.console_log_path(self.name), self.raw_log):
            wait_until(lambda log=log: "VMHOST-GUEST-DEVICES-DONE" in _text(log), f"guest boot ({log})", BOOT_WAIT, 0.2)

    def has_nic(self, name: str) -> bool:
        return MAC in self.conn.lookupByName(name).XMLDesc(0)

    def vmhost_calls(self) -> tuple[str, Callable[[], object], Callable[[], object]]:
        """(what is timed, attach, detach) through the engine's live update if it has one, else the driver."""
        update = self.engine.update
        if "live" in inspect.signature(update).parameters:
            return (
                "Engine.update live",
                lambda: update(self.name, {"nics": [self.nic]}, live=True),
                lambda: update(self.name, {"nics": []}, live=True),
            )
        driver = self.engine.driver

        def attach() -> None:
            spec = parse_spec(self._spec([self.nic]))
            driver.attach_nic(spec, engine_resources.plan(spec, self.engine.config).resources, MAC)

        def detach() -> None:
            spec = parse_spec(self._spec([self.nic]))
            driver.detach_nic(spec, engine_resources.plan(spec, self.engine.config).resources, MAC, UNPLUG_WAIT)

        return "driver attach_nic", attach, detach

    def close(self) -> None:
        for step in (
            lambda: self.engine.delete(self.name),
            self.engine.store.close,
            lambda: virsh("destroy", self.raw_name) if self.raw_started else None,
            lambda: virsh("undefine", self.raw_name) if self.raw_started else None,
            self.conn.close,
            lambda: _ip("link", "del", self.bridge),
        ):
            try:
                step()
            except Exception as exc:
                progress(f"nic bench cleanup step failed: {exc}")


def bench_nic_attach(workspace: Workspace, rounds: int) -> NicAttachResult:
    """`rounds` timed attach/detach cycles on each side after one warm-up, interleaved."""
    pair = _Pair(workspace)
    try:
        pair.wait_booted()
        path, attach, detach = pair.vmhost_calls()
        raw_dom = pair.conn.lookupByName(pair.raw_name)
        xml = pair.xml_file.read_text()
        result = NicAttachResult(path, Series(), Series(), Series(), Series())
        file = str(pair.xml_file)
        for index in range(rounds + 1):
            progress(f"nic attach round {index}/{rounds}")
            times = [
                timed(attach),
                _unplugged(pair, pair.name, detach),
                timed(lambda: virsh("attach-device", pair.raw_name, file, "--live")),
                _unplugged(pair, pair.raw_name, lambda: virsh("detach-device", pair.raw_name, file, "--live")),
                timed(lambda: virsh("attach-device", pair.raw_name, file, "--live", "--config")),
                _unplugged(
                    pair, pair.raw_name, lambda: virsh("detach-device", pair.raw_name, file, "--live", "--config")
                ),
                timed(lambda: raw_dom.attachDeviceFlags(xml, libvirt.VIR_DOMAIN_AFFECT_LIVE)),
                _unplugged(pair, pair.raw_name, lambda: raw_dom.detachDeviceFlags(xml, libvirt.VIR_DOMAIN_AFFECT_LIVE)),
            ]
            if index > 0:
                timed_series = (result.vmhost, result.virsh, result.virsh_config, result.libvirt)
                for series, seconds in zip(timed_series, times[::2], strict=True):
                    series.values.append(seconds)
        return result
    finally:
        pair.close()


def _unplugged(pair: _Pair, name: str, detach: Callable[[], object]) -> float:
    detach()
    wait_until(lambda: not pair.has_nic(name), f"NIC unplugged from {name}", UNPLUG_WAIT, 0.2)
    return 0.0


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _ip(*args: str) -> None:
    run(["ip", *args])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    rounds = parser.parse_args().rounds
    workspace = make_workspace()
    try:
        result = bench_nic_attach(workspace, rounds)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workspace.root, ignore_errors=True)
    print(" | ".join(result.table_row()))
    for label, text in result.raw_lines():
        print(f"{label}: {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
