"""The scale bench (`bench/run.py --scale`, issue 18): many VMs on one agent, against raw libvirt where there is
a raw side, measured in one run on one data dir. N is `--scale-n` (default 100):

11. N/2 starts at once through the API vs as many parallel `virsh create` of the same domain XML;
12. the restore at agent start of N VMs that should run (autostart, all shut off: a host reboot's state) vs N
    parallel `virsh create`, with the default `restore_concurrency` and with N; and when the first VM of the
    highest-priority `startup.order` group runs;
13. GET /v1/vms with 10·N defined VMs (also `?fields=`, a page of `?limit=` and a label filter);
14. the agent's RSS with those 10·N VMs;
15. an agent restart with the N restored VMs running and booted: spawn → /healthz (recovery is done by then)
    and → the restore has nothing left to do.

Everything it makes has the run's name prefix; run.py's cleanup deletes it, as for the default bench.
"""

import math
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import libvirt
from harness import (
    PREFIX,
    URI,
    Api,
    BenchError,
    Series,
    Session,
    create_agent_vms,
    each_parallel,
    fmt,
    parallel_starts,
    percentile,
    progress,
    raw_create,
    raw_destroy,
    settle,
    wall_parallel,
    write_raw_copies,
)

from vmhost.config import load_config
from vmhost.spec.units import parse_size

POLL = 0.01  # seconds between two polls of libvirt or the agent, where a time is measured
QEMU_OVERHEAD = 80 << 20  # a booted tiny TCG guest's RSS beyond its memory (128 MiB -> 202 MiB measured here)
HOST_MARGIN = 1 << 30  # what the host keeps for libvirtd, the agent and the page cache
RESTORE_TIMEOUT = 900.0  # seconds for the restore of N VMs on a 2-core TCG host
LABEL = "bench-group"  # the defined VMs of 13 carry LABEL=g0..g9, so a label filter answers a tenth of them
READY = "VMHOST-GUEST-READY"
PANIC = "Kernel panic"


@dataclass(frozen=True)
class ScaleSettings:
    n: int = 100
    memory: str = "128MiB"
    start_rounds: int = 3
    restarts: int = 5
    list_requests: int = 1000
    list_warmup: int = 100
    boot_timeout: float = 900.0  # seconds the restored guests get to boot before the restarts (15)

    @classmethod
    def of(cls, n: int, memory: str, quick: bool) -> "ScaleSettings":
        """With quick: one round of starts, two restarts, a tenth of the requests (a smoke run)."""
        if quick:
            return cls(n, memory, start_rounds=1, restarts=2, list_requests=100, list_warmup=10)
        return cls(n, memory)

    @property
    def starts(self) -> int:
        return max(2, self.n // 2)

    @property
    def defined(self) -> int:
        return 10 * self.n

    @property
    def first_group(self) -> int:
        """VMs with `startup.order: 0`, the highest priority; the others have no order (they come last)."""
        return max(1, self.n // 10)

    def describe(self) -> str:
        return (
            f"scale n={self.n}: {self.starts} parallel starts x {self.start_rounds} rounds, restore of {self.n} "
            f"({self.first_group} in startup.order 0), {self.restarts} agent restarts, {self.defined} defined "
            f"for {self.list_requests} list requests per query after {self.list_warmup} warm-up; guests "
            f"{self.memory}, 1 vCPU, TCG"
        )


def preflight_scale(settings: ScaleSettings) -> None:
    """N booted guests must fit in memory, or the host swaps or kills QEMUs and every number is off."""
    if settings.n < 2:
        raise BenchError(f"--scale-n must be at least 2, got {settings.n}")
    try:
        guest = parse_size(settings.memory)
    except ValueError as exc:
        raise BenchError(f"--scale-memory {exc}") from None
    needed = settings.n * (guest + QEMU_OVERHEAD) + HOST_MARGIN
    available = _meminfo_bytes("MemAvailable")
    if needed > available:
        raise BenchError(
            f"--scale-n {settings.n} with --scale-memory {settings.memory} needs about {needed >> 20} MiB for "
            f"{settings.n} booted TCG guests (+{QEMU_OVERHEAD >> 20} MiB QEMU each, +{HOST_MARGIN >> 20} MiB for "
            f"the host), but MemAvailable is {available >> 20} MiB: lower one of them"
        )


def _meminfo_bytes(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name == key:
            return int(rest.split()[0]) * 1024
    raise BenchError(f"/proc/meminfo has no {key}")


# ---- libvirt's own view ----------------------------------------------------------------------------


def _silence_libvirt(_ctx: object, _error: object) -> None:
    """libvirt prints every error to stderr unless a handler is set; the watch handles its own."""


class RunningWatch:
    """When libvirt first listed each of `names` as running, polled every 10 ms in a thread on a connection of
    its own: the agent's restore is measured the way `virsh create` is, by the domain running."""

    def __init__(self, names: list[str]):
        libvirt.registerErrorHandler(_silence_libvirt, None)
        self._names = set(names)
        self.first_running: dict[str, float] = {}
        self._conn = libvirt.open(URI)
        self._done = False
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> "RunningWatch":
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done = True
        self._thread.join(5)
        self._conn.close()

    def _poll(self) -> None:
        while not self._done and len(self.first_running) < len(self._names):
            try:
                running = self._conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_RUNNING)
            except libvirt.libvirtError:
                running = []
            now = time.time()
            for dom in running:
                name = dom.name()
                if name in self._names and name not in self.first_running:
                    self.first_running[name] = now
            time.sleep(POLL)

    def wait_all(self, timeout: float) -> bool:
        """True once every name ran; False after `timeout` seconds."""
        end = time.monotonic() + timeout
        while len(self.first_running) < len(self._names):
            if time.monotonic() > end:
                return False
            time.sleep(0.1)
        return True


def running_names(names: list[str]) -> list[str]:
    """Those of `names` libvirt lists as running (one call on a fresh connection)."""
    conn = libvirt.open(URI)
    try:
        running = {dom.name() for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_RUNNING)}
    finally:
        conn.close()
    return [name for name in names if name in running]


# ---- 11: parallel starts ---------------------------------------------------------------------------


@dataclass
class StartsResult:
    vms: int
    workers: int  # the agent's operation_workers: how many of the starts run at once
    agent: Series
    raw: Series


def bench_starts(
    session: Session, names: list[str], raw_files: dict[str, Path], settings: ScaleSettings
) -> StartsResult:
    """The first `starts` VMs at once through the API vs their raw copies at once; rounds interleaved."""
    assert session.api is not None and session.workspace is not None
    api, count = session.api, settings.starts
    files = dict(list(raw_files.items())[:count])
    result = StartsResult(count, load_config(session.workspace.config).operation_workers, Series(), Series())
    for index in range(settings.start_rounds):
        progress(f"{count} parallel starts, round {index + 1}/{settings.start_rounds}")
        agent_seconds, raw_seconds = parallel_starts(api, names[:count], files)
        result.agent.values.append(agent_seconds)
        result.raw.values.append(raw_seconds)
    return result


# ---- 12: restore at agent start --------------------------------------------------------------------


@dataclass
class RestoreResult:
    vms: int
    first_group: int
    concurrency: int  # the agent's restore_concurrency
    default: bool  # the agent's default config (else restore_concurrency = N, vm_memory_overhead = 0)
    raw: float  # N parallel `virsh create`, release -> the last returned
    healthz: float  # spawn -> /healthz answered (recovery done; the restore runs on in the background)
    first_priority: float | None  # spawn -> the first VM of startup.order 0 ran (libvirt)
    all_running: float | None  # spawn -> the last VM ran (libvirt); None: not all within RESTORE_TIMEOUT
    ran: int  # how many ran
    progress: dict[str, Any] | None  # GET /v1/host/restore once it was done (None: the agent has no such route)
    spawned_at: float

    @property
    def ratio(self) -> float | None:
        return None if self.all_running is None else self.all_running / self.raw

    @property
    def began(self) -> float | None:
        """Spawn -> the agent began the restore (its own start-up and recovery before it)."""
        began = (self.progress or {}).get("began_at")
        return None if began is None else float(began) - self.spawned_at

    def agent_times(self) -> str:
        """The restore as the agent itself reports it, relative to the spawn."""
        view = self.progress
        if view is None:
            return "GET /v1/host/restore: no such route"

        def since(value: Any) -> str:
            return "-" if value is None else f"+{fmt(float(value) - self.spawned_at)}"

        groups = ", ".join(
            f"order {g['order']}: began {since(g['started_at'])}, first running {since(g['first_running_at'])}, "
            f"up {since(g['finished_at'])}"
            for g in view.get("groups", [])
        )
        counts = {k: v for k, v in view.items() if isinstance(v, int) and v}
        errors = view.get("errors") or {}
        return (
            f"state {view.get('state')}, began {since(view.get('began_at'))}, done {since(view.get('finished_at'))}; "
            f"{counts}; {groups}" + (f"; errors: {errors}" if errors else "")
        )


def reboot_host(session: Session, names: list[str]) -> float:
    """A host reboot's state: the agent stopped first (so it sees nothing go), then every running VM destroyed;
    each stays marked to run (autostart, and desired state running). Seconds the agent took to exit."""
    progress("stopping the agent, then every VM is shut off (a host reboot's state)")
    stop = session.stop_agent()
    running = running_names(names)
    settle(lambda: each_parallel([partial(raw_destroy, name) for name in running]))
    return stop


def raw_restore(raw_files: dict[str, Path]) -> float:
    """The baseline of 12: every raw copy `virsh create`d at once (then destroyed again)."""
    progress(f"{len(raw_files)} raw `virsh create` at once")
    raw = wall_parallel([partial(raw_create, path) for path in raw_files.values()])
    settle(lambda: each_parallel([partial(raw_destroy, name) for name in raw_files]))
    return raw


def bench_restore(
    session: Session, names: list[str], first_group: int, raw: float, concurrency: int | None
) -> RestoreResult:
    """After reboot_host: a new agent restores the N VMs on its own. `concurrency` sets `restore_concurrency`
    for this agent (None: the agent's default) and `vm_memory_overhead = 0`: with N starts in flight, admission
    control would promise each its guest + 192 MiB of TCG overhead at once (N=100: 32 GiB, more than this host
    has) and refuse the late ones before their QEMU needs it; the raw side has no such check."""
    assert session.workspace is not None
    config = session.workspace.config.read_text()
    if concurrency is not None:
        session.workspace.config.write_text(f"{config}restore_concurrency = {concurrency}\nvm_memory_overhead = 0\n")
    effective = load_config(session.workspace.config).restore_concurrency
    progress(f"starting a new agent: it restores {len(names)} VMs (restore_concurrency {effective})")
    try:
        with RunningWatch(names) as watch:
            agent = session.start_agent(poll=POLL)
            assert session.api is not None
            all_ran = _wait_restored(watch, session.api)
            first_running = dict(watch.first_running)
    finally:
        session.workspace.config.write_text(config)
    view = _restore_view(session.api)
    first = [first_running[n] for n in names[:first_group] if n in first_running]
    return RestoreResult(
        vms=len(names),
        first_group=first_group,
        concurrency=effective,
        default=concurrency is None,
        raw=raw,
        healthz=agent.ready_at - agent.spawned_at,
        first_priority=min(first) - agent.spawned_at if first else None,
        all_running=max(first_running.values()) - agent.spawned_at if all_ran else None,
        ran=len(first_running),
        progress=view,
        spawned_at=agent.spawned_at,
    )


def _wait_restored(watch: RunningWatch, api: Api) -> bool:
    """Until libvirt ran every VM (True), or the agent says its restore is over without that (a start failed:
    False), or RESTORE_TIMEOUT passed (False)."""
    end = time.monotonic() + RESTORE_TIMEOUT
    while not watch.wait_all(1.0):
        view = _restore_view(api, timeout=0)
        if time.monotonic() > end or (view is not None and view.get("state") != "running"):
            return watch.wait_all(1.0)  # a VM the restore just started may be a poll away
    return True


def _restore_view(api: Api, timeout: float = 60.0) -> dict[str, Any] | None:
    """GET /v1/host/restore, polled until the restore is no longer running (or `timeout` passed); None: the
    agent has no such route."""
    end = time.monotonic() + timeout
    while True:
        response = api.client.get("/v1/host/restore")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise BenchError(f"GET /v1/host/restore: HTTP {response.status_code}: {response.text[:500]}")
        view: dict[str, Any] = response.json()
        if view.get("state") != "running" or time.monotonic() > end:
            return view
        time.sleep(POLL)


def wait_booted(api: Api, names: list[str], timeout: float) -> tuple[float, int]:
    """Until every guest printed its ready line or panicked (so 15 measures a restart among idle guests, not
    amid a boot storm); the seconds it took, and how many booted."""
    began = time.perf_counter()
    pending, booted = set(names), 0
    while pending and time.perf_counter() - began < timeout:
        for name in sorted(pending):
            log = api.console_log(name)
            if READY in log or PANIC in log:
                pending.discard(name)
                booted += READY in log
        if pending:
            time.sleep(2)
    return time.perf_counter() - began, booted


# ---- 15: agent restart ---------------------------------------------------------------------------


@dataclass
class Restarts:
    """Agent restarts in a row, with the same VMs in the same state throughout."""

    load: str  # /proc/loadavg before the first
    stop: Series = field(default_factory=Series)  # SIGTERM -> exited
    healthz: Series = field(default_factory=Series)  # spawn -> /healthz (recovery done)
    ready: Series = field(default_factory=Series)  # spawn -> /healthz and the restore done
    running: list[int] = field(default_factory=list)  # VMs running after each


@dataclass
class RestartResult:
    boot_wait: float
    booted: int
    running: Restarts  # with the N restored VMs running (the target)
    stopped: Restarts | None = None  # the baseline: the same store, the N stopped, the host quiet


def restarts(session: Session, names: list[str], count: int, what: str) -> Restarts:
    """`count` times: SIGTERM, spawn, /healthz (polled every 10 ms), then the first GET /v1/host/restore that is
    not `running` (so "ready" includes the agent's first authenticated answer); libvirt's count of running
    VMs after each shows the restart left them alone."""
    result = Restarts(" ".join(Path("/proc/loadavg").read_text().split()[:3]))
    for index in range(count):
        progress(f"agent restart {index + 1}/{count} with {what}")
        result.stop.values.append(session.stop_agent())
        agent = session.start_agent(poll=POLL)
        assert session.api is not None
        _restore_view(session.api)
        done = time.time()
        result.healthz.values.append(agent.ready_at - agent.spawned_at)
        result.ready.values.append(done - agent.spawned_at)
        result.running.append(len(running_names(names)))
    return result


def bench_restart(session: Session, names: list[str], settings: ScaleSettings) -> RestartResult:
    """15 with the restored guests booted (amid their boot storm the agent would get a sliver of the CPU)."""
    assert session.api is not None
    progress(f"waiting up to {settings.boot_timeout:.0f}s for the {len(names)} restored guests to boot")
    boot_wait, booted = wait_booted(session.api, names, settings.boot_timeout)
    return RestartResult(boot_wait, booted, restarts(session, names, settings.restarts, f"{len(names)} VMs running"))


def bench_restart_stopped(session: Session, names: list[str], settings: ScaleSettings) -> Restarts:
    """The baseline of 15: the VMs killed and no longer autostart (else each restart would restore them), so
    the same agent restarts with the same store on a quiet host; what 15 adds is the running VMs' share."""
    assert session.api is not None
    api = session.api
    progress(f"killing the {len(names)} VMs and turning their autostart off")
    each_parallel([partial(api.kill, name) for name in names])
    each_parallel([partial(api.call, "PATCH", f"/v1/vms/{name}?wait=true", {"autostart": False}) for name in names])
    return restarts(session, names, settings.restarts, f"{len(names)} VMs stopped")


# ---- 13 and 14: listings and memory at 10·N VMs ------------------------------------------------------


QUERIES = ("", "?state=stopped&fields=name,state", f"?label.{LABEL}=g3")
"""The plain listing (the target), a state filter with field selection, a label filter (issue 18's list API)."""
PAGE = 100
PAGED = f"?limit={PAGE}"
"""The paged crawl: the first page, then each Link rel="next" until there is none."""


@dataclass
class ListingResult:
    vms: int
    latencies: dict[str, list[float]]  # query -> seconds per request (PAGED: per page)
    refused: dict[str, str]  # query -> why the agent refused it (a list API it does not have)
    rss_kib: dict[str, int]
    crawls: list[float] = field(default_factory=list)  # seconds per paged crawl of every VM


def bench_listing(session: Session, settings: ScaleSettings) -> ListingResult:
    """Top up to 10·N defined (stopped) VMs, each labelled, then time sequential GETs on one keep-alive client."""
    assert session.api is not None and session.agent is not None
    api = session.api
    missing = settings.defined - len(api.names())
    progress(f"creating {missing} more VMs (to {settings.defined})")
    names = [f"{PREFIX}list-{i:04d}" for i in range(missing)]
    began = time.perf_counter()
    _create_labelled(api, session, names, settings.memory)
    progress(f"created them in {fmt(time.perf_counter() - began)}")
    vms = len(api.names())
    result = ListingResult(vms, {}, {}, {})
    for query in QUERIES:
        first = api.client.get(f"/v1/vms{query}")
        if first.status_code != 200:
            result.refused[query] = f"HTTP {first.status_code}: {first.text[:200]}"
            continue
        for _ in range(settings.list_warmup):
            _timed_get(api.client, query)
        progress(f"GET /v1/vms{query} x {settings.list_requests}")
        result.latencies[query] = [_timed_get(api.client, query) for _ in range(settings.list_requests)]
    _paged(api.client, result, vms, crawls=max(1, settings.list_requests // math.ceil(vms / PAGE)))
    _check_full_listing(api.client, vms)
    result.rss_kib = session.agent.rss_kib()
    return result


def _create_labelled(api: Api, session: Session, names: list[str], memory: str) -> None:
    for group in range(10):
        members = names[group::10]
        create_agent_vms(api, session.made, members, memory, labels={LABEL: f"g{group}"})


def _timed_get(client: httpx.Client, query: str) -> float:
    """Seconds for one GET, the whole body read (not decoded)."""
    began = time.perf_counter()
    response = client.get(f"/v1/vms{query}")
    seconds = time.perf_counter() - began
    if response.status_code != 200:
        raise BenchError(f"GET /v1/vms{query}: HTTP {response.status_code}: {response.text[:200]}")
    return seconds


def _paged(client: httpx.Client, result: ListingResult, vms: int, crawls: int) -> None:
    """Crawls of every VM, page by page along the Link headers (about list_requests pages in all); each must
    see every VM once. One untimed crawl first, as the warm-up."""
    first = client.get(f"/v1/vms{PAGED}")
    if first.status_code != 200:
        result.refused[PAGED] = f"HTTP {first.status_code}: {first.text[:200]}"
        return
    progress(f"GET /v1/vms{PAGED} and its next pages, {crawls} crawls of {vms} VMs")
    pages: list[float] = []
    for index in range(crawls + 1):
        seconds, rows = [], 0
        url: str | None = f"/v1/vms{PAGED}"
        while url is not None:
            began = time.perf_counter()
            response = client.get(url)
            seconds.append(time.perf_counter() - began)
            if response.status_code != 200:
                raise BenchError(f"GET {url}: HTTP {response.status_code}: {response.text[:200]}")
            rows += len(response.json())
            url = response.links.get("next", {}).get("url")
        if rows != vms:
            raise BenchError(f"a crawl of GET /v1/vms{PAGED} saw {rows} VMs, expected {vms}")
        if index > 0:
            pages += seconds
            result.crawls.append(sum(seconds))
    result.latencies[f"{PAGED} (each page)"] = pages


def _check_full_listing(client: httpx.Client, expected: int) -> None:
    """Outside the timing: the plain listing answered every VM."""
    rows = client.get("/v1/vms").json()
    if len(rows) != expected:
        raise BenchError(f"GET /v1/vms answered {len(rows)} VMs, expected {expected}")


# ---- the run ---------------------------------------------------------------------------------------


@dataclass
class ScaleResults:
    starts: StartsResult
    restore: RestoreResult  # with the agent's default restore_concurrency (the target)
    restore_all: RestoreResult  # with restore_concurrency = N, as many at once as the raw side
    restart: RestartResult
    listing: ListingResult


def create_restore_vms(session: Session, settings: ScaleSettings) -> list[str]:
    """The N VMs of 11, 12 and 15: autostart (so the next agent start restores them), the first tenth in
    `startup.order` 0 (the highest priority), the others without an order (they come after it)."""
    assert session.api is not None
    names = [f"{PREFIX}s-{i:03d}" for i in range(settings.n)]
    first, rest = names[: settings.first_group], names[settings.first_group :]
    progress(f"creating {len(names)} VMs")
    create_agent_vms(session.api, session.made, first, settings.memory, autostart=True, startup={"order": 0})
    create_agent_vms(session.api, session.made, rest, settings.memory, autostart=True)
    return names


def bench_scale(session: Session, settings: ScaleSettings) -> ScaleResults:
    assert session.workspace is not None
    names = create_restore_vms(session, settings)
    raw_files = write_raw_copies(session.workspace, [(name, name.replace(PREFIX, f"{PREFIX}raw-")) for name in names])
    starts = bench_starts(session, names, raw_files, settings)
    reboot_host(session, names)
    raw = raw_restore(raw_files)
    restore = bench_restore(session, names, settings.first_group, raw, None)
    reboot_host(session, names)
    restore_all = bench_restore(session, names, settings.first_group, raw, settings.n)
    restart = bench_restart(session, names, settings)
    restart.stopped = bench_restart_stopped(session, names, settings)
    listing = bench_listing(session, settings)
    return ScaleResults(starts, restore, restore_all, restart, listing)


# ---- report ----------------------------------------------------------------------------------------


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else "ok" if ok else "MISSED"


def table_rows(results: ScaleResults) -> list[list[str]]:
    starts, restore, restart, listing = results.starts, results.restore, results.restart, results.listing
    start_ratio = starts.agent.median / starts.raw.median
    full = listing.latencies.get("")
    rss_mb = listing.rss_kib["VmRSS"] * 1024 / 1e6
    running, stopped = restart.running, restart.stopped
    ready = running.ready.median
    return [
        [
            "11",
            f"{starts.vms} starts in parallel ({starts.workers} workers), median of {len(starts.agent.values)}",
            f"API {fmt(starts.agent.median)}",
            f"{starts.vms}x virsh create {fmt(starts.raw.median)}",
            f"agent/raw {start_ratio:.3f}",
            "<= 1.10",
            _verdict(start_ratio <= 1.10),
        ],
        _restore_row("12a", restore),
        [
            "12b",
            f"restore: first VM of startup.order 0 ({restore.first_group} VMs) running",
            "+" + (fmt(restore.first_priority) if restore.first_priority is not None else "never"),
            "-",
            f"/healthz +{fmt(restore.healthz)}",
            "report",
            "-",
        ],
        _restore_row("12c", results.restore_all),
        [
            "13",
            f"GET /v1/vms, {listing.vms} VMs, {len(full or [])} req",
            f"p50 {percentile(full, 50) * 1000:.2f} ms" if full else "-",
            "-",
            f"p99 {percentile(full, 99) * 1000:.2f} ms" if full else "-",
            "p99 <= 10 ms",
            _verdict(percentile(full, 99) <= 0.010) if full else "MISSED",
        ],
        [
            "14",
            f"agent RSS, {listing.vms} VMs defined",
            f"{listing.rss_kib['VmRSS'] / 1024:.1f} MiB",
            "-",
            f"VmRSS {rss_mb:.1f} MB",
            "<= 150 MB",
            _verdict(rss_mb <= 150),
        ],
        [
            "15",
            f"agent restart, {restore.vms} VMs running, median of {len(running.ready.values)}",
            f"ready {fmt(ready)}",
            f"{restore.vms} stopped: ready {fmt(stopped.ready.median)}" if stopped else "-",
            f"/healthz {fmt(running.healthz.median)}",
            "<= 2 s",
            _verdict(ready <= 2.0),
        ],
    ]


def _restore_row(number: str, restore: RestoreResult) -> list[str]:
    ratio = restore.ratio
    return [
        number,
        f"restore of {restore.vms} VMs at agent start, restore_concurrency {restore.concurrency}"
        + (" (default)" if restore.default else ", no overhead"),
        "all running +" + (fmt(restore.all_running) if restore.all_running is not None else f"? ({restore.ran} ran)"),
        f"{restore.vms}x virsh create {fmt(restore.raw)}",
        "agent/raw " + (f"{ratio:.3f}" if ratio is not None else "n/a"),
        "<= 1.20",
        _verdict(ratio is not None and ratio <= 1.20),
    ]


def _restore_lines(restore: RestoreResult) -> list[tuple[str, str]]:
    label = f"12 concurrency {restore.concurrency}:"
    return [
        (f"{label} spawn -> /healthz", fmt(restore.healthz)),
        (
            f"{label} spawn -> first order-0 VM running",
            fmt(restore.first_priority) if restore.first_priority is not None else "never",
        ),
        (
            f"{label} spawn -> all {restore.vms} running",
            fmt(restore.all_running) if restore.all_running is not None else f"only {restore.ran} within timeout",
        ),
        (f"{label} restore began -> all running", _restore_only(restore)),
        (f"{label} the agent's report", restore.agent_times()),
    ]


def _restore_only(restore: RestoreResult) -> str:
    """The restore without the agent's own start-up: began -> the last VM running, against the raw side."""
    if restore.began is None or restore.all_running is None:
        return "-"
    seconds = restore.all_running - restore.began
    return f"{fmt(seconds)} (agent/raw {seconds / restore.raw:.3f})"


def _restart_lines(what: str, restarts: Restarts) -> list[tuple[str, str]]:
    return [
        (f"15 {what}: loadavg before", restarts.load),
        (f"15 {what}: SIGTERM -> exited", restarts.stop.describe()),
        (f"15 {what}: spawn -> /healthz", restarts.healthz.describe()),
        (f"15 {what}: spawn -> restore done", restarts.ready.describe()),
        (f"15 {what}: VMs running after each", " ".join(str(n) for n in restarts.running)),
    ]


def raw_lines(results: ScaleResults) -> list[tuple[str, str]]:
    starts, restore, restart, listing = results.starts, results.restore, results.restart, results.listing
    rows = [
        (f"11 API, {starts.vms} in parallel", starts.agent.describe()),
        (f"11 virsh create, {starts.vms} in parallel", starts.raw.describe()),
        (f"12 virsh create, {restore.vms} in parallel", fmt(restore.raw)),
        *_restore_lines(restore),
        *_restore_lines(results.restore_all),
    ]
    for query, values in listing.latencies.items():
        ms = sorted(v * 1000 for v in values)
        rows.append(
            (
                f"13 GET /v1/vms{query}",
                f"p50 {percentile(ms, 50):.2f} ms, p90 {percentile(ms, 90):.2f} ms, p99 {percentile(ms, 99):.2f} ms, "
                f"max {ms[-1]:.2f} ms, {sum(v > 10 for v in ms)} of {len(ms)} over 10 ms",
            )
        )
    if listing.crawls:
        crawls = Series(listing.crawls)
        rows.append(
            (
                f"13 crawl of {listing.vms} VMs by {PAGED} pages",
                f"median {fmt(crawls.median)}, min {fmt(min(crawls.values))}, max {fmt(max(crawls.values))} "
                f"(n={len(crawls.values)})",
            )
        )
    rows += [(f"13 GET /v1/vms{query}", f"refused: {why}") for query, why in listing.refused.items()]
    rss = listing.rss_kib
    return [
        *rows,
        ("14 agent memory", f"VmRSS {rss['VmRSS']} KiB, VmHWM (peak) {rss.get('VmHWM', 0)} KiB"),
        ("15 restored guests booted", f"{restart.booted} of {restore.vms} after {fmt(restart.boot_wait)}"),
        *_restart_lines(f"{restore.vms} running", restart.running),
        *(_restart_lines(f"{restore.vms} stopped", restart.stopped) if restart.stopped else []),
    ]
