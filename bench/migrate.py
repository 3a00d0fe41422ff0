"""Live migration between two vmhost agents of the multi-host test bed vs raw `virsh migrate` (rows 16 and 17).

Run as root from the repository root:  .venv/bin/python bench/migrate.py [--quick]   (or bench/run.py --migrate)

It uses a bed of scripts/test-hosts.sh (host1, host2: each its own libvirtd and agent). `--bed auto` (the
default) measures on the shared bed when it is up and quiet (no domains, no agent started with test settings such
as a fault point) and leaves it up; otherwise it makes a private bed next to it (its own root, prefix and subnet)
and removes that at the end. `--bed shared` always takes the shared one (made with `up 2` and removed again if
none is up), `--bed own` always a private one.

16. one booted 128 MiB tiny guest: `POST /v1/vms/{name}/migrate?wait=true` to the other agent vs
    `virsh -c SRC migrate --live --p2p --persistent --undefinesource NAME DST_URI DST_MIGRATION_URI` of its raw
    twin (the agent's domain XML with a new name, uuid and console log, without vmhost's metadata). Each round
    goes host1 -> host2 and back, the two sides interleaved (the order alternates by round), one warm-up round,
    then the median. Downtime of every migration from libvirt lifecycle events on both hosts (one event loop,
    the same clock for both sides): source SUSPENDED (migrated) -> the destination's next RESUMED (or STARTED),
    and libvirt's own figure from the destination's completed job stats.
17. five booted tiny guests: `POST /v1/host/evacuate` {"to": [host2], "concurrency": 5} vs five `virsh migrate`
    at once (one thread each) of five raw twins; each round migrates them back afterwards, untimed.

It prints one table and the raw samples, deletes everything it made (also on Ctrl-C or an error) and exits 0
even when a target is missed. Names start with `vmhost-bench-mig-<random>-`: others' tests share the bed.
"""

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import libvirt
from harness import (
    REPO,
    BenchError,
    Series,
    each_parallel,
    fmt,
    guest_spec,
    interrupts_deferred,
    minus,
    progress,
    quietly,
    raw_copy,
    run,
    terminate,
    timed,
    wall_parallel,
)

sys.path.insert(0, str(REPO))  # the bed's Python side lives with the tests
from tests.multihost.testbed import TestBed, TestBedError, TestHost

PREFIX = f"vmhost-bench-mig-{secrets.token_hex(3)}-"
MEMORY = "128MiB"
TARGET = 1.10
EVACUATED = 5
BOOTED_MARK = "VMHOST-GUEST-READY"
BOOT_WAIT = 180.0
"""Seconds a tiny TCG guest may take to print its ready line on a loaded host."""
EVENT_WAIT = 5.0
"""Seconds to wait for the destination's resume event after a migration returned."""
OPERATION_TIMEOUT = 600.0
AGENT_PATIENCE = 60.0
"""Seconds the cleanup waits for an agent that does not answer (restarted by someone's test)."""
FOREIGN_WAIT = 60.0
"""Seconds to wait for other people's running VMs to leave host1's agent before an evacuation (it would move
them too)."""


@dataclass(frozen=True)
class MigrateSettings:
    mode: str
    rounds: int
    evacuations: int


FULL = MigrateSettings(mode="full", rounds=7, evacuations=3)
QUICK = MigrateSettings(mode="quick", rounds=3, evacuations=1)


# ---- lifecycle events of both hosts, on one loop -------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    at: float  # time.time() when the callback ran
    host: str
    vm: str
    event: int
    detail: int


@dataclass(frozen=True)
class Downtime:
    """Seconds after the source paused the guest for the last memory pass."""

    resumed: float  # the guest runs again, at the destination: the downtime
    arrived: float  # libvirt's finish at the destination: it has the guest (held paused, or already running)
    source_stopped: float  # libvirt's confirm on the source: its QEMU is gone (migrateToURI3 returns after it)


class Lifecycle:
    """Every domain lifecycle event of the watched hosts, stamped on arrival by one event loop thread: the two
    hosts' events share a clock and a delivery path, so a downtime is measured the same way for vmhost and raw."""

    _registered = False

    def __init__(self) -> None:
        if not Lifecycle._registered:  # once per process, and before any connection that wants events
            libvirt.virEventRegisterDefaultImpl()
            libvirt.registerErrorHandler(lambda _opaque, _error: None, None)  # errors are raised; not printed too
            Lifecycle._registered = True
        self.events: list[Event] = []
        self._lock = threading.Lock()
        self._connections: list[tuple[libvirt.virConnect, int]] = []
        self._stopped = threading.Event()
        self._timer = libvirt.virEventAddTimeout(100, lambda _timer, _opaque: None, None)  # wakes the loop up
        self._thread = threading.Thread(target=self._loop, name="lifecycle-events", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopped.is_set():
            libvirt.virEventRunDefaultImpl()

    def watch(self, host: TestHost) -> None:
        conn = libvirt.open(host.libvirt_uri)
        callback = conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._event, host.name)
        self._connections.append((conn, callback))

    def _event(self, _conn: libvirt.virConnect, dom: libvirt.virDomain, event: int, detail: int, host: str) -> None:
        with self._lock:
            self.events.append(Event(time.time(), host, dom.name(), event, detail))

    def downtime(self, vm: str, source: str, destination: str, since: float) -> "Downtime | None":
        """From the source's SUSPENDED (migrated) event: the destination's first RESUMED (else STARTED) after it,
        the VM's arrival there (its first SUSPENDED, i.e. held paused by VIR_MIGRATE_PAUSED, or RESUMED) and the
        source's STOPPED; None when the events did not all come within EVENT_WAIT."""
        deadline = time.monotonic() + EVENT_WAIT
        while True:
            with self._lock:
                events = [e for e in self.events if e.vm == vm and e.at >= since]
            paused = next(
                (
                    e.at
                    for e in events
                    if e.host == source
                    and e.event == libvirt.VIR_DOMAIN_EVENT_SUSPENDED
                    and e.detail == libvirt.VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED
                ),
                None,
            )
            if paused is not None:
                later = [e for e in events if e.host == destination and e.at >= paused]
                resumed = next(
                    (
                        e.at
                        for kind in (libvirt.VIR_DOMAIN_EVENT_RESUMED, libvirt.VIR_DOMAIN_EVENT_STARTED)
                        for e in later
                        if e.event == kind
                    ),
                    None,
                )
                stopped = next(
                    (e.at for e in events if e.host == source and e.event == libvirt.VIR_DOMAIN_EVENT_STOPPED), None
                )
                if resumed is not None and stopped is not None:
                    arrived = next(
                        e.at
                        for e in later
                        if e.event in (libvirt.VIR_DOMAIN_EVENT_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_RESUMED)
                        or e.at == resumed
                    )
                    return Downtime(resumed - paused, arrived - paused, stopped - paused)
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)

    def close(self) -> None:
        for conn, callback in self._connections:
            with contextlib.suppress(libvirt.libvirtError):
                conn.domainEventDeregisterAny(callback)
                conn.close()
        self._stopped.set()
        self._thread.join(timeout=2)
        libvirt.virEventRemoveTimeout(self._timer)


def libvirt_downtime(host: TestHost, vm: str) -> float | None:
    """libvirt's own downtime (seconds) from the destination's completed migration job, if it keeps one."""
    conn = libvirt.open(host.libvirt_uri)
    try:
        stats = conn.lookupByName(vm).jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    except libvirt.libvirtError:
        return None
    finally:
        conn.close()
    downtime = stats.get("downtime")
    return None if downtime is None else downtime / 1000


# ---- the two sides ---------------------------------------------------------------------------------------------


def operation(host: TestHost, path: str, body: dict[str, Any], **params: str) -> dict[str, Any]:
    """POST ...?wait=true (and `params`) on the host's agent; the finished operation, which must have succeeded."""
    with host.http(timeout=OPERATION_TIMEOUT) as client:
        try:
            response = client.post(path, json=body, params={"wait": "true", **params})
            done: dict[str, Any] = response.json()
            while response.status_code < 300 and done.get("state") in ("queued", "running"):  # past the wait limit
                response = client.get(f"/v1/operations/{done['id']}", params={"wait": "true"})
                done = response.json()
        except httpx.HTTPError as exc:
            raise BenchError(f"{host.name}: POST {path}: {exc}") from exc
    if response.status_code >= 300 or done.get("state") != "succeeded":
        raise BenchError(f"{host.name}: POST {path}: HTTP {response.status_code}: {str(done)[:500]}")
    return done


def vmhost_migrate(source: TestHost, destination: TestHost, vm: str) -> None:
    operation(source, f"/v1/vms/{vm}/migrate", {"to": destination.agent_url})


def virsh_migrate(source: TestHost, destination: TestHost, vm: str) -> None:
    run(
        [
            "virsh",
            "-c",
            source.libvirt_uri,
            "migrate",
            "--live",
            "--p2p",
            "--persistent",
            "--undefinesource",
            vm,
            destination.libvirt_uri,
            destination.migration_uri,
        ],
        timeout=OPERATION_TIMEOUT,
    )


def domain_state(host: TestHost, vm: str) -> int | None:
    conn = libvirt.open(host.libvirt_uri)
    try:
        return int(conn.lookupByName(vm).state()[0])
    except libvirt.libvirtError:
        return None
    finally:
        conn.close()


def check_moved(source: TestHost, destination: TestHost, vm: str) -> None:
    """After the timing: it runs at the destination and the source has no domain of it left."""
    if domain_state(destination, vm) != libvirt.VIR_DOMAIN_RUNNING or domain_state(source, vm) is not None:
        raise BenchError(
            f"{vm} after its migration: {destination.name} state {domain_state(destination, vm)}, "
            f"{source.name} state {domain_state(source, vm)} (expected running, no domain)"
        )


@dataclass
class Made:
    """What the cleanup removes: the agent VMs (on whichever host they are now) and the raw twins."""

    agent_vms: list[str] = field(default_factory=list)
    raw_vms: list[str] = field(default_factory=list)


def make_guests(host: TestHost, made: Made, workspace: Path, names: list[tuple[str, str]]) -> None:
    """Each (agent name, raw name): the guest created and started through the agent, its raw twin defined from
    the agent's (inactive) domain XML and started; then wait until all of them have booted."""
    made.agent_vms.extend(agent for agent, _ in names)
    each_parallel(
        [partial(operation, host, "/v1/vms", guest_spec(agent, MEMORY), start="true") for agent, _ in names], workers=5
    )
    conn = libvirt.open(host.libvirt_uri)
    try:
        for agent, raw in names:
            xml = conn.lookupByName(agent).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            made.raw_vms.append(raw)
            conn.defineXML(raw_copy(xml, raw, workspace / f"{raw}.log")).create()
    finally:
        conn.close()
    for agent, raw in names:
        wait_booted(lambda agent=agent: console_of(host, agent), agent)  # type: ignore[misc]
        wait_booted(lambda raw=raw: _read(workspace / f"{raw}.log"), raw)  # type: ignore[misc]


def console_of(host: TestHost, vm: str) -> str:
    try:
        with host.http(timeout=30) as client:
            return client.get(f"/v1/vms/{vm}/console/log").text
    except httpx.HTTPError as exc:
        raise BenchError(f"{host.name}: the console of {vm}: {exc}") from exc


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def wait_booted(console: Callable[[], str], vm: str) -> None:
    deadline = time.monotonic() + BOOT_WAIT
    while BOOTED_MARK not in console():
        if time.monotonic() > deadline:
            tail = console()[-600:]
            raise BenchError(f"{vm} did not print {BOOTED_MARK} within {BOOT_WAIT:.0f}s; its console:\n{tail}")
        time.sleep(0.3)


# ---- row 16: one live migration -------------------------------------------------------------------------------


@dataclass
class Side:
    """One side's migrations of one direction: wall time, event downtime, libvirt's downtime."""

    seconds: Series = field(default_factory=Series)
    downtime: Series = field(default_factory=Series)
    arrived: Series = field(default_factory=Series)  # source suspended -> destination has it (paused or running)
    stopped: Series = field(default_factory=Series)  # source suspended -> source stopped
    libvirt: Series = field(default_factory=Series)
    missing: int = 0  # migrations whose events or job stats did not come


@dataclass
class LiveResult:
    sides: dict[tuple[str, str], Side]  # (vmhost|virsh, there|back)

    def side(self, who: str, direction: str = "there") -> Side:
        return self.sides[(who, direction)]


def bench_live(
    hosts: tuple[TestHost, TestHost], events: Lifecycle, made: Made, workspace: Path, rounds: int
) -> LiveResult:
    host1, host2 = hosts
    agent, raw = PREFIX + "live", PREFIX + "raw-live"
    make_guests(host1, made, workspace, [(agent, raw)])
    sides = {(who, way): Side() for who in ("vmhost", "virsh") for way in ("there", "back")}
    result = LiveResult(sides)
    moves = {"vmhost": (vmhost_migrate, agent), "virsh": (virsh_migrate, raw)}
    for index in range(rounds + 1):
        progress(f"live migration round {index}/{rounds}" + (" (warm-up)" if index == 0 else ""))
        order = ("vmhost", "virsh") if index % 2 == 0 else ("virsh", "vmhost")
        for direction, (source, destination) in (("there", (host1, host2)), ("back", (host2, host1))):
            for who in order:
                move, vm = moves[who]
                since = time.time()
                seconds = timed(partial(move, source, destination, vm))
                downtime = events.downtime(vm, source.name, destination.name, since)
                own = libvirt_downtime(destination, vm)
                check_moved(source, destination, vm)
                if index == 0:
                    continue
                side = result.side(who, direction)
                side.seconds.values.append(seconds)
                if downtime is not None:
                    side.arrived.values.append(downtime.arrived)
                    side.stopped.values.append(downtime.source_stopped)
                resumed = None if downtime is None else downtime.resumed
                for series, value in ((side.downtime, resumed), (side.libvirt, own)):
                    if value is None:
                        side.missing += 1
                    else:
                        series.values.append(value)
    remove_guests(host1, [agent], [raw])  # the evacuation (row 17) must find only its own guests running
    return result


# ---- row 17: evacuation ----------------------------------------------------------------------------------------


@dataclass
class EvacuationResult:
    vmhost: Series = field(default_factory=Series)
    virsh: Series = field(default_factory=Series)
    skipped: str = ""  # why the row could not be measured


def running_on_agent(host: TestHost) -> list[str]:
    try:
        with host.http(timeout=30) as client:
            response = client.get("/v1/vms")
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise BenchError(f"{host.name}: GET /v1/vms: {exc}") from exc
    return [row["name"] for row in response.json() if row.get("state") == "running"]


def no_foreign_vms(host: TestHost) -> None:
    """An evacuation moves every running VM of the agent: wait until only ours run there."""
    deadline = time.monotonic() + FOREIGN_WAIT
    while foreign := [name for name in running_on_agent(host) if not name.startswith(PREFIX)]:
        if time.monotonic() > deadline:
            raise BenchError(
                f"{host.name}'s agent runs other VMs ({', '.join(foreign)}); an evacuation would move them"
            )
        time.sleep(2)


def vmhost_evacuate(source: TestHost, destination: TestHost, vms: list[str]) -> None:
    """The evacuate operation succeeds even when a VM stayed: each of ours must have gone, and nobody else's."""
    done = operation(source, "/v1/host/evacuate", {"to": [destination.agent_url], "concurrency": len(vms)})
    entries = done["result"]["vms"]
    failed = [entry for entry in entries if not entry["ok"]]
    if failed:
        raise BenchError(f"the evacuation of {source.name} left VMs there: {failed}")
    if others := sorted({entry["vm"] for entry in entries} - set(vms)):
        progress(f"WARNING: the evacuation also moved other people's VMs to {destination.name}: {others}")


def bench_evacuate(hosts: tuple[TestHost, TestHost], made: Made, workspace: Path, rounds: int) -> EvacuationResult:
    host1, host2 = hosts
    agents = [f"{PREFIX}evac-{i}" for i in range(EVACUATED)]
    raws = [f"{PREFIX}raw-evac-{i}" for i in range(EVACUATED)]
    make_guests(host1, made, workspace, list(zip(agents, raws, strict=True)))
    result = EvacuationResult()

    def ours() -> None:
        no_foreign_vms(host1)
        result.vmhost.values.append(timed(partial(vmhost_evacuate, host1, host2, agents)))
        for vm in agents:
            check_moved(host1, host2, vm)
        each_parallel([partial(vmhost_migrate, host2, host1, vm) for vm in agents], workers=EVACUATED)

    def theirs() -> None:
        result.virsh.values.append(wall_parallel([partial(virsh_migrate, host1, host2, vm) for vm in raws]))
        for vm in raws:
            check_moved(host1, host2, vm)
        each_parallel([partial(virsh_migrate, host2, host1, vm) for vm in raws], workers=EVACUATED)

    for index in range(rounds):
        progress(f"evacuation round {index + 1}/{rounds}")
        for side in (ours, theirs) if index % 2 == 0 else (theirs, ours):
            side()
    return result


# ---- report ----------------------------------------------------------------------------------------------------


@dataclass
class Results:
    live: LiveResult
    evacuation: EvacuationResult
    activity: list[str]


def _ratio(ours: Series, theirs: Series) -> float:
    return ours.median / theirs.median


def table_rows(results: Results) -> list[list[str]]:
    live, evac = results.live, results.evacuation
    ours, theirs = live.side("vmhost"), live.side("virsh")
    ratio = _ratio(ours.seconds, theirs.seconds)
    rows = [
        [
            "16",
            f"live migration host1->host2, {MEMORY} booted, median of {len(ours.seconds.values)}",
            f"vmhost {fmt(ours.seconds.median)}",
            f"virsh migrate {fmt(theirs.seconds.median)}",
            f"vmhost/virsh {ratio:.3f}",
            f"<= {TARGET:.2f}",
            "ok" if ratio <= TARGET else "MISSED",
        ],
        [
            "16",
            "  downtime (events: src suspended -> dst resumed)",
            f"vmhost {_median(ours.downtime)}",
            f"virsh {_median(theirs.downtime)}",
            f"libvirt: vmhost {_median(ours.libvirt)}, virsh {_median(theirs.libvirt)}",
            "report only",
            "-",
        ],
    ]
    if evac.skipped:
        rows.append(["17", f"evacuation of {EVACUATED}", "-", "-", f"skipped: {evac.skipped}", "report only", "-"])
    else:
        evac_ratio = _ratio(evac.vmhost, evac.virsh)
        rows.append(
            [
                "17",
                f"evacuate {EVACUATED} booted (concurrency {EVACUATED}), median of {len(evac.vmhost.values)}",
                f"vmhost {fmt(evac.vmhost.median)}",
                f"{EVACUATED}x virsh migrate {fmt(evac.virsh.median)}",
                f"vmhost/virsh {evac_ratio:.3f}",
                f"<= {TARGET:.2f} (report only)",
                "ok" if evac_ratio <= TARGET else "MISSED",
            ]
        )
    return rows


def _median(series: Series) -> str:
    return fmt(series.median) if series.values else "n/a"


def _describe(series: Series) -> str:
    return series.describe() if series.values else "n/a"


def raw_lines(results: Results) -> list[tuple[str, str]]:
    lines = []
    for direction, label in (("there", "host1->host2"), ("back", "host2->host1")):
        for who in ("vmhost", "virsh"):
            side = results.live.side(who, direction)
            lines += [
                (f"16 {label} {who}, wall time", side.seconds.describe()),
                (f"16 {label} {who}, downtime (events)", _describe(side.downtime)),
                (f"16 {label} {who}, downtime, src suspended -> dst arrived", _describe(side.arrived)),
                (f"16 {label} {who}, downtime, dst arrived -> resumed", _describe(minus(side.downtime, side.arrived))),
                (
                    f"16 {label} {who}, dst arrived -> src stopped (confirm)",
                    _describe(minus(side.stopped, side.arrived)),
                ),
                (f"16 {label} {who}, downtime (libvirt job stats)", _describe(side.libvirt)),
            ]
            if side.missing:
                lines.append((f"16 {label} {who}, values missing", str(side.missing)))
        back_ratio = _ratio(
            results.live.side("vmhost", direction).seconds, results.live.side("virsh", direction).seconds
        )
        lines.append((f"16 {label} vmhost/virsh", f"{back_ratio:.3f}"))
    evac = results.evacuation
    if not evac.skipped:
        lines += [("17 evacuate, vmhost", evac.vmhost.describe()), ("17 5x virsh migrate", evac.virsh.describe())]
    return lines


def render_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def activity(when: str) -> str:
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    qemus = sum(1 for path in Path("/proc").glob("[0-9]*/comm") if _comm(path).startswith("qemu-system"))
    return f"{when}: loadavg {load}, {qemus} QEMU process(es) on the machine"


def _comm(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def report(results: Results, settings: MigrateSettings, hosts: tuple[TestHost, TestHost]) -> str:
    header = ["#", "measurement", "vmhost", "baseline", "result", "target", "verdict"]
    width = max(len(label) for label, _ in raw_lines(results))
    return "\n".join(
        [
            "vmhost migration benchmarks (multi-host test bed)",
            f"date: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}; nproc={os.cpu_count()}; "
            f"{hosts[0].name} {hosts[0].libvirt_uri} <-> {hosts[1].name} {hosts[1].libvirt_uri} (TCG)",
            f"mode: {settings.mode} ({settings.rounds} rounds there and back + 1 warm-up, "
            f"{settings.evacuations} evacuation round(s) of {EVACUATED}; guests {MEMORY}, 1 vCPU)",
            "host activity: " + "; ".join(results.activity),
            "",
            render_table([header, *table_rows(results)]),
            "",
            "raw numbers:",
            *(f"  {label.ljust(width)}  {text}" for label, text in raw_lines(results)),
        ]
    )


# ---- setup and cleanup -----------------------------------------------------------------------------------------


def cleanup(hosts: tuple[TestHost, ...], made: Made) -> None:
    """Best effort, every step on its own: our agent VMs deleted on both hosts, then any domain with our prefix."""
    progress("cleaning up")
    for host in hosts:
        for vm in made.agent_vms:
            quietly(partial(_delete, host, vm))
    for host in hosts:
        quietly(partial(_sweep, host))


def remove_guests(host: TestHost, agents: list[str], raws: list[str]) -> None:
    """Agent VMs deleted through the agent, raw twins destroyed and undefined."""
    for vm in agents:
        _delete(host, vm)
    conn = libvirt.open(host.libvirt_uri)
    try:
        for vm in raws:
            dom = conn.lookupByName(vm)
            dom.destroy()
            dom.undefine()
    finally:
        conn.close()


def _delete(host: TestHost, vm: str) -> None:
    """Through the agent, waiting out a restart of it (others' tests restart the shared bed's agents)."""
    deadline = time.monotonic() + AGENT_PATIENCE
    with host.http(timeout=120) as client:
        while True:
            try:
                response = client.delete(f"/v1/vms/{vm}", params={"force": "true", "wait": "true"})
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
                continue
            if response.status_code >= 300 and response.status_code != 404:
                raise BenchError(f"{host.name}: DELETE {vm}: HTTP {response.status_code}: {response.text[:300]}")
            return


def _sweep(host: TestHost) -> None:
    conn = libvirt.open(host.libvirt_uri)
    try:
        for dom in conn.listAllDomains():
            if dom.name().startswith(PREFIX):
                if dom.isActive():
                    quietly(dom.destroy)
                quietly(dom.undefine)
    finally:
        conn.close()


def busy(bed: TestBed) -> str:
    """Why the shared bed is not quiet enough to measure on ("" if it is): an agent started with test settings
    (a fault point would fire in our migrations), or any domain on its hosts (someone's test is running: its
    load skews the numbers, and an evacuation of host1 would move that test's VMs too)."""
    for host in json.loads(bed.run("status").stdout):
        if settings := [item for item in host.get("agent_env", []) if item]:
            return f"{host['name']}'s agent runs with {' '.join(settings)}"
    for host in bed.status() or []:
        if domains := host.domains():
            return f"{host.name} has domains ({', '.join(domains)})"
    return ""


def private_bed() -> TestBed:
    """A second bed next to the shared one: its own root, name prefix and subnet."""
    tag = secrets.token_hex(2)
    return TestBed(
        env={
            "VMHOST_TESTBED_ROOT": f"/srv/vmhost-testbed-bench-{tag}",
            "VMHOST_TESTBED_PREFIX": f"vb{tag}",
            "VMHOST_TESTBED_SUBNET": f"10.231.{50 + secrets.randbelow(50)}",
        }
    )


def the_bed(choice: str) -> tuple[TestBed, tuple[TestHost, TestHost], bool]:
    """The bed to measure on, its first two hosts, and whether it is ours to remove at the end. `shared`: the
    shared bed (made if none is up, then removed again); `own`: a private one; `auto`: the shared bed if it is up
    and quiet, else a private one (never a shared bed others could start using before we remove it)."""
    bed = TestBed()
    hosts = bed.status()
    if choice == "auto":
        why = "none is up" if hosts is None else busy(bed)
        if why:
            progress(f"not measuring on the shared test bed ({why}): making a private one")
    if choice == "own" or (choice == "auto" and why):
        bed, hosts = private_bed(), None
    made = hosts is None
    if hosts is None:
        progress(f"making a test bed of 2 hosts ({dict(bed.env) or 'the shared one'})")
        try:
            hosts = bed.up(2)
        except TestBedError as exc:
            quietly(bed.down)
            raise BenchError(str(exc)) from exc
    if len(hosts) < 2:
        raise BenchError(f"the test bed has {len(hosts)} host(s); migration needs 2")
    return bed, (hosts[0], hosts[1]), made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds: a smoke run, not a measurement")
    parser.add_argument(
        "--bed",
        choices=("auto", "shared", "own"),
        default="auto",
        help="auto (default): the shared test bed if it is up and quiet, else a private one made and removed",
    )
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    if os.geteuid() != 0:
        print("error: run as root (the test bed needs it)", file=sys.stderr)
        return 1
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, terminate)
    bed, made, hosts, ours_to_remove = None, Made(), None, False
    workspace = Path(tempfile.mkdtemp(prefix="vmhost-bench-mig-", dir="/tmp"))  # /tmp: the same on every host
    workspace.chmod(0o711)
    events = Lifecycle()
    try:
        bed, hosts, ours_to_remove = the_bed(args.bed)
        for host in hosts:
            events.watch(host)
        progress(f"names {PREFIX}*, raw console logs in {workspace}")
        log = [activity("before")]
        live = bench_live(hosts, events, made, workspace, settings.rounds)
        try:
            evacuation = bench_evacuate(hosts, made, workspace, settings.evacuations)
        except BenchError as exc:
            progress(f"evacuation not measured: {exc}")
            evacuation = EvacuationResult(skipped=str(exc))
        log.append(activity("after"))
        results = Results(live, evacuation, log)
    except KeyboardInterrupt:
        progress("interrupted")
        return 130
    except (BenchError, TestBedError, libvirt.libvirtError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if args.bed != "own":
            print("(others' tests may have restarted the shared bed's agents: try --bed own)", file=sys.stderr)
        return 1
    finally:
        with interrupts_deferred():
            events.close()
            if hosts is not None:
                cleanup(hosts, made)
            if ours_to_remove and bed is not None:
                quietly(bed.down)
            shutil.rmtree(workspace, ignore_errors=True)
    print(report(results, settings, hosts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
