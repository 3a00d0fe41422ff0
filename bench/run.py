"""vmhost benchmarks: the HTTP agent against raw `virsh`, measured side by side in one run.

Run as root from the repository root:  .venv/bin/python bench/run.py [--quick]
The scale bench instead (rows 11-15, scale.py):  .venv/bin/python bench/run.py --scale [--scale-n N] [--quick]
The migration bench instead (rows 16-17, migrate.py, on the multi-host test bed):  bench/run.py --migrate [--quick]
The fleet bench instead (rows 18-19, fleet.py, on a fleet bed of its own with etcd):  bench/run.py --fleet [--quick]

It starts its own agent (`vmhost serve` on a free loopback port, TCG, data under a fresh temp dir), measures

1. one start through the API vs `virsh create` of the same domain XML,
2. 10 starts in parallel through the API vs 10 parallel `virsh create` vs the 10 started one after another,
3. GET /v1/vms latency with 100 defined VMs,
4. the agent's RSS with 100 defined VMs,
5. how soon a SIGKILLed QEMU shows up as a `crashed` event on GET /v1/events, next to libvirt's own latency,
6. how soon a graceful stop returns once libvirt reports the guest powered off (exits.py has 5 and 6),
7. what the durable journal costs: a journaled operation's store writes, synchronous FULL vs NORMAL (journal.py),
8. a VM from an image (overlay + seed + start) vs qemu-img create -b, cloud-localds, virsh create (from_image.py),
9. a live NIC attach through vmhost vs `virsh attach-device --live` of the same XML (nic_attach.py),
10. a full snapshot create and revert through vmhost vs `virsh snapshot-create-as` / `snapshot-revert` (snapshots.py),

prints a table against the targets and deletes everything it made (also on Ctrl-C). It reports; it never fails
because a target is missed. `--scale` runs scale.py's measurements 11-15 (many VMs: parallel starts, the restore
at agent start, listings and memory at 1000 VMs, agent restart) instead; they take long, so never by default.
"""

import argparse
import datetime
import os
import platform
import shutil
import signal
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
from exits import CrashResult, StopResult, bench_crash, bench_stop
from from_image import FromImageResult, bench_from_image, preflight_image
from harness import (
    FULL,
    GUEST_DIR,
    PREFIX,
    QUICK,
    VMHOST,
    AgentProcess,
    Api,
    BenchError,
    Made,
    Series,
    Session,
    Settings,
    Workspace,
    create_agent_vms,
    each_parallel,
    fmt,
    interrupts_deferred,
    make_workspace,
    minus,
    parallel_starts,
    percentile,
    progress,
    quietly,
    raw_create,
    raw_destroy,
    settle,
    terminate,
    timed,
    virsh,
    write_raw_copies,
)
from journal import JournalResult, bench_journal
from nic_attach import NicAttachResult, bench_nic_attach
from scale import ScaleResults, ScaleSettings, bench_scale, preflight_scale
from scale import raw_lines as scale_raw_lines
from scale import table_rows as scale_table_rows
from snapshots import SnapshotResult, bench_snapshots

# ---- the measurements ------------------------------------------------------------------------------


@dataclass
class SingleResult:
    agent: Series
    raw: Series
    agent_server: Series


def bench_single(api: Api, workspace: Workspace, made: Made, settings: Settings) -> SingleResult:
    """One start: POST /v1/vms/{name}/start?wait=true vs `virsh create`; interleaved, one warm-up each."""
    name, raw_name = PREFIX + "single", PREFIX + "raw-single"
    create_agent_vms(api, made, [name], settings.memory)
    xml_file = write_raw_copies(workspace, [(name, raw_name)])[raw_name]
    result = SingleResult(Series(), Series(), Series())
    for index in range(settings.single_runs + 1):
        progress(f"single start {index}/{settings.single_runs}")
        began = time.perf_counter()
        server_seconds = api.start(name)
        agent_seconds = time.perf_counter() - began
        settle(partial(api.kill, name))
        raw_seconds = timed(partial(raw_create, xml_file))
        settle(partial(raw_destroy, raw_name))
        if index > 0:  # run 0 warms connections and caches on both sides
            result.agent.values.append(agent_seconds)
            result.agent_server.values.append(server_seconds)
            result.raw.values.append(raw_seconds)
    return result


@dataclass
class ParallelResult:
    agent: Series
    raw: Series
    serial: Series


def bench_parallel(api: Api, workspace: Workspace, made: Made, settings: Settings) -> ParallelResult:
    """10 starts at once through the API vs 10 `virsh create` at once vs the 10 one after another."""
    count = settings.parallel_vms
    names = [f"{PREFIX}par-{i}" for i in range(count)]
    raw_names = [f"{PREFIX}raw-par-{i}" for i in range(count)]
    create_agent_vms(api, made, names, settings.memory)
    files = write_raw_copies(workspace, list(zip(names, raw_names, strict=True)))
    result = ParallelResult(Series(), Series(), Series())
    for index in range(settings.parallel_rounds):
        progress(f"parallel round {index + 1}/{settings.parallel_rounds}")
        agent_seconds, raw_seconds = parallel_starts(api, names, files)
        result.agent.values.append(agent_seconds)
        result.raw.values.append(raw_seconds)
        result.serial.values.append(timed(lambda: [api.start(name) for name in names]))
        settle(lambda: each_parallel([partial(api.kill, name) for name in names]))
    return result


@dataclass
class ListResult:
    vms: int
    latencies: list[float]

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 99)


def bench_list(api: Api, made: Made, settings: Settings) -> ListResult:
    """Top up to 100 defined (stopped) VMs, warm up, then time sequential GET /v1/vms on one keep-alive client."""
    missing = settings.list_vms - len(api.names())
    progress(f"creating {missing} more VMs (to {settings.list_vms})")
    create_agent_vms(api, made, [f"{PREFIX}list-{i:03d}" for i in range(missing)], settings.memory)
    vms = len(api.names())
    for _ in range(settings.list_warmup):
        _get_list(api.client, vms)
    progress(f"GET /v1/vms x {settings.list_requests}")
    return ListResult(vms, [_get_list(api.client, vms) for _ in range(settings.list_requests)])


def _get_list(client: httpx.Client, expected: int) -> float:
    """Seconds for one GET (whole body read, not decoded); the answer is checked outside the timing."""
    began = time.perf_counter()
    response = client.get("/v1/vms")
    seconds = time.perf_counter() - began
    if response.status_code != 200 or len(response.json()) != expected:
        raise BenchError(f"GET /v1/vms: HTTP {response.status_code}, expected {expected} VMs")
    return seconds


# ---- report ----------------------------------------------------------------------------------------


@dataclass
class Results:
    single: SingleResult
    parallel: ParallelResult
    listing: ListResult
    rss_kib: dict[str, int]
    crash: CrashResult
    stop: StopResult
    activity: list[str]
    journal: JournalResult
    from_image: FromImageResult
    nic_attach: NicAttachResult
    snapshots: SnapshotResult


def other_guests() -> list[str]:
    """Names of QEMU guests running on this host that this run did not start."""
    names = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and b"qemu-system" in argv[0] and b"-name" in argv:
            name = argv[argv.index(b"-name") + 1].decode(errors="replace").removeprefix("guest=").split(",")[0]
            if not name.startswith(PREFIX):
                names.append(name)
    return names


def host_activity(when: str) -> str:
    """Other load skews every number on a 2-core TCG host: say how busy it was."""
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return f"{when}: loadavg {load}, {len(other_guests())} other QEMU guest(s) running"


def machine() -> list[str]:
    versions = {}
    for line in virsh("version").splitlines():
        key, _, value = line.partition(":")
        versions[key.strip()] = value.strip()
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return [
        f"date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}",
        f"machine: nproc={os.cpu_count()}, {cpu}, {memory_kib // 1024} MiB RAM, Linux {platform.release()}",
        f"libvirt: {versions.get('Using library', '?')}; hypervisor: {versions.get('Running hypervisor', '?')}; "
        f"accel tcg; Python {platform.python_version()}",
    ]


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


TABLE_HEADER = ["#", "measurement", "vmhost", "baseline", "result", "target", "verdict"]


def table_rows(results: Results, settings: Settings) -> list[list[str]]:
    single, parallel, listing = results.single, results.parallel, results.listing
    crash, stop = results.crash, results.stop
    single_ratio = single.agent.median / single.raw.median
    parallel_ratio = parallel.agent.median / parallel.raw.median
    serial_ratio = parallel.serial.median / parallel.agent.median
    rss_mb = results.rss_kib["VmRSS"] * 1024 / 1e6
    n = settings.parallel_vms
    return [
        TABLE_HEADER,
        [
            "1",
            f"single start, median of {len(single.agent.values)}",
            f"API {fmt(single.agent.median)}",
            f"virsh create {fmt(single.raw.median)}",
            f"agent/raw {single_ratio:.3f}",
            "<= 1.10",
            verdict(single_ratio <= 1.10),
        ],
        [
            "2a",
            f"{n} starts in parallel, median of {len(parallel.agent.values)}",
            f"API {fmt(parallel.agent.median)}",
            f"{n}x virsh create {fmt(parallel.raw.median)}",
            f"agent/raw {parallel_ratio:.3f}",
            "<= 1.15",
            verdict(parallel_ratio <= 1.15),
        ],
        [
            "2b",
            f"{n} starts serial vs parallel (API)",
            f"serial {fmt(parallel.serial.median)}",
            f"parallel {fmt(parallel.agent.median)}",
            f"serial/agent {serial_ratio:.2f}",
            ">= 2.5",
            verdict(serial_ratio >= 2.5),
        ],
        [
            "3",
            f"GET /v1/vms, {listing.vms} VMs, {len(listing.latencies)} req",
            f"p50 {listing.p50 * 1000:.2f} ms",
            "-",
            f"p99 {listing.p99 * 1000:.2f} ms",
            "p99 <= 10 ms",
            verdict(listing.p99 <= 0.010),
        ],
        [
            "4",
            f"agent RSS, {listing.vms} VMs defined",
            f"{results.rss_kib['VmRSS'] / 1024:.1f} MiB",
            "-",
            f"VmRSS {rss_mb:.1f} MB",
            "<= 120 MB",
            verdict(rss_mb <= 120),
        ],
        [
            "5",
            f"SIGKILL QEMU -> `crashed` event, median of {len(crash.received.values)}",
            f"event {fmt(crash.received.median)}",
            f"libvirt shut off {fmt(crash.libvirt.median)}",
            f"agent share {fmt(crash.agent.median)}",
            "event <= 500 ms",
            verdict(crash.received.median <= 0.5),
        ],
        [
            "6",
            f"graceful stop returns after poweroff, median of {len(stop.returned.values)}",
            f"returned +{fmt(stop.returned.median)}",
            f"ACPI -> libvirt shut off {fmt(stop.poweroff.median)}",
            f"off -> response {fmt(stop.returned.median)}",
            "<= 500 ms",
            verdict(stop.returned.median <= 0.5),
        ],
        results.journal.table_row(),
        results.from_image.table_row(),
        results.nic_attach.table_row("9"),
        *results.snapshots.table_rows("10"),
    ]


def render_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def raw_numbers(results: Results) -> list[str]:
    single, parallel, listing = results.single, results.parallel, results.listing
    overhead = Series([a - s for a, s in zip(single.agent.values, single.agent_server.values, strict=True)])
    ms = sorted(value * 1000 for value in listing.latencies)
    rss = results.rss_kib
    crash, stop = results.crash, results.stop
    rows = [
        ("1  API start, HTTP round trip", single.agent.describe()),
        ("1  API start, operation in agent", single.agent_server.describe()),
        ("1  API start, HTTP + queueing", overhead.describe()),
        ("1  virsh create", single.raw.describe()),
        ("2a API, 10 in parallel", parallel.agent.describe()),
        ("2a virsh create, 10 in parallel", parallel.raw.describe()),
        ("2b API, 10 one after another", parallel.serial.describe()),
        (
            "3  GET /v1/vms",
            f"p50 {percentile(ms, 50):.2f} ms, p90 {percentile(ms, 90):.2f} ms, p99 {percentile(ms, 99):.2f} ms, "
            f"min {ms[0]:.2f} ms, max {ms[-1]:.2f} ms, mean {statistics.fmean(ms):.2f} ms, "
            f"{sum(v > 10 for v in ms)} of {len(ms)} over 10 ms",
        ),
        ("4  agent memory", f"VmRSS {rss['VmRSS']} KiB, VmHWM (peak) {rss.get('VmHWM', 0)} KiB"),
        ("5  kill -> `crashed` event received", crash.received.describe()),
        ("5  kill -> libvirt says shut off", crash.libvirt.describe()),
        ("5  libvirt shut off -> event received", crash.agent.describe()),
        ("5    libvirt shut off -> agent published", minus(crash.published, crash.libvirt).describe()),
        ("5    agent published -> event received", minus(crash.received, crash.published).describe()),
        ("5  event reasons", _counts(crash.reasons)),
        ("6  stop requested -> libvirt says shut off", stop.poweroff.describe()),
        ("6  libvirt shut off -> HTTP response back", stop.returned.describe()),
        ("6    libvirt shut off -> operation finished", stop.finished.describe()),
        ("6    operation finished -> response back", minus(stop.returned, stop.finished).describe()),
        ("6  stop, HTTP round trip", stop.round_trip.describe()),
        ("6  stop methods", _counts(stop.methods)),
        results.journal.raw_line(),
        *results.from_image.raw_lines(),
        *results.nic_attach.raw_lines("9"),
        *results.snapshots.raw_lines("10"),
    ]
    return aligned(rows)


def aligned(rows: list[tuple[str, str]]) -> list[str]:
    width = max(len(label) for label, _ in rows)
    return [f"{label.ljust(width)}  {text}" for label, text in rows]


def _counts(values: list[str]) -> str:
    return ", ".join(f"{value!r} x{count}" for value, count in Counter(values).most_common())


def report(results: Results, settings: Settings) -> str:
    return "\n".join(
        [
            "vmhost benchmarks",
            *machine(),
            f"mode: {settings.mode} ({settings.single_runs} single starts + 1 warm-up each side, "
            f"{settings.parallel_rounds} parallel rounds, {settings.list_requests} list requests after "
            f"{settings.list_warmup} warm-up, {settings.exit_runs} crashes and {settings.exit_runs} stops "
            f"+ 1 warm-up each; guests {settings.memory}, 1 vCPU, TCG)",
            "host activity: " + "; ".join(results.activity),
            "",
            render_table(table_rows(results, settings)),
            "",
            "raw numbers:",
            *("  " + line for line in raw_numbers(results)),
        ]
    )


def scale_report(results: ScaleResults, settings: ScaleSettings, activity: list[str], minutes: float) -> str:
    return "\n".join(
        [
            "vmhost scale benchmarks",
            *machine(),
            f"mode: {settings.describe()}; measured in {minutes:.1f} min (before the cleanup)",
            "host activity: " + "; ".join(activity),
            "",
            render_table([TABLE_HEADER, *scale_table_rows(results)]),
            "",
            "raw numbers:",
            *("  " + line for line in aligned(scale_raw_lines(results))),
        ]
    )


# ---- setup and cleanup -----------------------------------------------------------------------------


def preflight(scale: bool) -> None:
    if os.geteuid() != 0:
        raise BenchError("run as root (it talks to qemu:///system)")
    if not VMHOST.exists():
        raise BenchError(f"{VMHOST} is missing: create the venv first (scripts/setup.sh)")
    for file in ("vmlinuz", "initrd.img"):
        if not (GUEST_DIR / file).is_file():
            raise BenchError(f"{GUEST_DIR / file} is missing: run guest/build.sh")
    if not scale:
        preflight_image()  # the Debian image only the default run's row 8 uses
    virsh("version")


def cleanup(session: Session) -> None:
    """Best effort, every step on its own: API deletes, a virsh sweep of this run's prefix, agent, temp dir."""
    progress("cleaning up")
    api, agent = session.api, session.agent
    if api is not None:
        names = session.made.agent_vms
        quietly(lambda: each_parallel([partial(quietly, partial(api.delete, name)) for name in names]))
        api.client.close()
    quietly(_sweep_domains)
    if agent is not None:
        quietly(agent.stop)
    if session.workspace is not None:
        shutil.rmtree(session.workspace.root, ignore_errors=True)


def _sweep_domains() -> None:
    """Whatever the API left behind (or raw copies): every domain named with this run's prefix."""
    for name in virsh("list", "--state-running", "--state-paused", "--name").split():
        if name.startswith(PREFIX):
            quietly(partial(virsh, "destroy", name))
    for name in virsh("list", "--all", "--name").split():
        if name.startswith(PREFIX):
            quietly(partial(virsh, "undefine", name))


def measure(api: Api, agent: AgentProcess, workspace: Workspace, made: Made, settings: Settings) -> Results:
    activity = [host_activity("before")]
    single = bench_single(api, workspace, made, settings)
    parallel = bench_parallel(api, workspace, made, settings)
    crash = bench_crash(api, made, settings)
    stop = bench_stop(api, made, settings)
    listing = bench_list(api, made, settings)
    rss_kib = agent.rss_kib()
    from_image = bench_from_image(api, workspace, made, settings)
    nic_attach = bench_nic_attach(workspace, settings.single_runs)
    snapshots = bench_snapshots(workspace, settings.single_runs)
    activity.append(host_activity("after"))
    journal = bench_journal(workspace.root)
    return Results(
        single, parallel, listing, rss_kib, crash, stop, activity, journal, from_image, nic_attach, snapshots
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions: a smoke run, not a measurement")
    parser.add_argument(
        "--scale", action="store_true", help="the scale bench (bench/scale.py, rows 11-15) instead of rows 1-10"
    )
    parser.add_argument(
        "--scale-n",
        type=int,
        default=ScaleSettings.n,
        help="with --scale: N VMs restored (N/2 parallel starts, 10*N defined for the listing); default %(default)s",
    )
    parser.add_argument(
        "--scale-memory", default=ScaleSettings.memory, help="with --scale: each guest's memory; default %(default)s"
    )
    parser.add_argument(
        "--migrate", action="store_true", help="the migration bench (bench/migrate.py, rows 16-17) on the test bed"
    )
    parser.add_argument(
        "--fleet", action="store_true", help="the fleet bench (bench/fleet.py, rows 18-19) on a fleet bed with etcd"
    )
    args = parser.parse_args()
    if args.fleet:
        from fleet import main as fleet_main  # noqa: PLC0415 (it needs the fleet bed, only then)

        return fleet_main(["--quick"] if args.quick else [])
    if args.migrate:
        from migrate import main as migrate_main  # noqa: PLC0415 (it needs the multi-host bed, only then)

        return migrate_main(["--quick"] if args.quick else [])
    if not args.scale and (args.scale_n != ScaleSettings.n or args.scale_memory != ScaleSettings.memory):
        parser.error("--scale-n and --scale-memory go with --scale")
    settings = QUICK if args.quick else FULL
    scale = ScaleSettings.of(args.scale_n, args.scale_memory, quick=args.quick) if args.scale else None
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored
    signal.signal(signal.SIGTERM, terminate)
    session = Session()
    try:
        preflight(scale is not None)
        if scale is not None:
            preflight_scale(scale)
        session.workspace = make_workspace()
        progress(f"starting the agent (data in {session.workspace.data_dir}, names {PREFIX}*)")
        session.start_agent()
        if scale is not None:
            activity, began = [host_activity("before")], time.monotonic()
            scale_results = bench_scale(session, scale)
            activity.append(host_activity("after"))
            minutes = (time.monotonic() - began) / 60
        else:
            assert session.api is not None and session.agent is not None
            results = measure(session.api, session.agent, session.workspace, session.made, settings)
    except KeyboardInterrupt:
        progress("interrupted")
        return 130
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if session.agent is not None:
            print(f"agent log (last lines):\n{session.agent.log_tail()}", file=sys.stderr)
        return 1
    finally:
        with interrupts_deferred():
            cleanup(session)
    print(scale_report(scale_results, scale, activity, minutes) if scale is not None else report(results, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
