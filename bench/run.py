"""vmhost benchmarks: the HTTP agent against raw `virsh`, measured side by side in one run.

Run as root from the repository root:  .venv/bin/python bench/run.py [--quick]

It starts its own agent (`vmhost serve` on a free loopback port, TCG, data under a fresh temp dir), measures

1. one start through the API vs `virsh create` of the same domain XML,
2. 10 starts in parallel through the API vs 10 parallel `virsh create` vs the 10 started one after another,
3. GET /v1/vms latency with 100 defined VMs,
4. the agent's RSS with 100 defined VMs,

prints a table against the targets and deletes everything it made (also on Ctrl-C). It reports; it never fails
because a target is missed.
"""

import argparse
import datetime
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
VMHOST = REPO / ".venv" / "bin" / "vmhost"
URI = "qemu:///system"
GUEST_DIR = Path(os.environ.get("VMHOST_GUEST_DIR", "/var/lib/vmhost/images/tiny-guest"))
PREFIX = f"bench-{secrets.token_hex(3)}-"
SETTLE = 0.3  # seconds after every destroy, on both sides, so QEMU teardown never overlaps the next start
COMMAND_TIMEOUT = 120.0


class BenchError(Exception):
    """Something the benchmark cannot work around (not a missed target)."""


@dataclass(frozen=True)
class Settings:
    mode: str
    single_runs: int
    parallel_rounds: int
    list_requests: int
    list_warmup: int
    parallel_vms: int = 10
    list_vms: int = 100
    memory: str = "128MiB"


FULL = Settings(mode="full", single_runs=7, parallel_rounds=5, list_requests=1000, list_warmup=100)
QUICK = Settings(mode="quick", single_runs=2, parallel_rounds=1, list_requests=200, list_warmup=20)


# ---- statistics ----------------------------------------------------------------------------------


@dataclass
class Series:
    """Seconds, one value per run."""

    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def describe(self) -> str:
        return (
            f"median {_fmt(self.median)}, min {_fmt(min(self.values))}, max {_fmt(max(self.values))} "
            f"(n={len(self.values)}): " + " ".join(_fmt(v) for v in self.values)
        )


def _fmt(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.2f} s"


def percentile(values: list[float], pct: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


# ---- processes -------------------------------------------------------------------------------------


def run(argv: list[str], timeout: float = COMMAND_TIMEOUT) -> str:
    """Run a command (argv list, no shell); its stdout, or BenchError with its stderr."""
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)  # noqa: S603
    if result.returncode != 0:
        raise BenchError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def virsh(*args: str) -> str:
    return run(["virsh", "-c", URI, *args])


def timed(action: Callable[[], object]) -> float:
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


def wall_parallel(actions: Sequence[Callable[[], object]]) -> float:
    """Release every action at once (one thread each); seconds until the last one returned."""
    barrier = threading.Barrier(len(actions) + 1)

    def released(action: Callable[[], object]) -> None:
        barrier.wait()
        action()

    with ThreadPoolExecutor(max_workers=len(actions)) as pool:
        futures = [pool.submit(released, action) for action in actions]
        barrier.wait()
        began = time.perf_counter()
        for future in futures:
            future.result()
        return time.perf_counter() - began


def each_parallel(actions: Sequence[Callable[[], object]], workers: int = 10) -> None:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(action) for action in actions]:
            future.result()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---- workspace and agent ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def raw_dir(self) -> Path:
        return self.root / "raw"

    @property
    def agent_log(self) -> Path:
        return self.root / "agent.log"


def make_workspace() -> Workspace:
    """A fresh dir under /tmp (sticky, world-traversable), mode 0711 down to data_dir, as libvirt needs."""
    workspace = Workspace(Path(tempfile.mkdtemp(prefix="vmhost-bench-", dir="/tmp")))
    workspace.root.chmod(0o711)
    for path in (workspace.data_dir, workspace.raw_dir):
        path.mkdir(mode=0o711)
    workspace.config.write_text(
        f'libvirt_uri = "{URI}"\ndata_dir = "{workspace.data_dir}"\naccel = "tcg"\nstop_timeout = 30\n'
    )
    return workspace


class AgentProcess:
    """`vmhost serve` in its own session (so Ctrl-C reaches only us, and we can still clean up through it)."""

    def __init__(self, workspace: Workspace):
        self.workspace = workspace
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        env = {**os.environ, "VMHOST_CONFIG": str(self.workspace.config)}
        with self.workspace.agent_log.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603
                [str(VMHOST), "serve", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.process is not None and self.process.poll() is not None:
                raise BenchError(f"the agent exited ({self.process.returncode}):\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise BenchError(f"the agent did not answer /healthz within {timeout:.0f}s:\n{self.log_tail()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self) -> str:
        return (self.workspace.data_dir / "api-token").read_text().strip()

    def rss_kib(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak) of the serve process, in KiB."""
        values = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
        return values

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.workspace.agent_log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)


class Api:
    """The /v1 calls the benchmark needs; every call waits for its operation."""

    def __init__(self, url: str, token: str):
        self.client = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=COMMAND_TIMEOUT,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )

    def call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = self.client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise BenchError(f"{method} {path}: {exc}") from exc
        if response.status_code >= 300:
            raise BenchError(f"{method} {path}: HTTP {response.status_code}: {response.text[:500]}")
        return response.json()

    def create(self, spec: dict[str, Any]) -> None:
        self.call("POST", "/v1/vms?wait=true", spec)

    def start(self, name: str) -> float:
        """Start and check it runs; the server-side operation time (seconds) as the agent measured it."""
        operation = self.call("POST", f"/v1/vms/{name}/start?wait=true")
        if (operation.get("result") or {}).get("state") != "running":
            raise BenchError(f"start of {name} did not leave it running: {operation}")
        return float(operation["finished_at"] - operation["started_at"])

    def kill(self, name: str) -> None:
        self.call("POST", f"/v1/vms/{name}/kill?wait=true")

    def delete(self, name: str, patience: float = 60.0) -> None:
        """Delete, waiting out an operation still running on the VM (e.g. one cut short by Ctrl-C)."""
        end = time.monotonic() + patience
        while True:
            response = self.client.delete(f"/v1/vms/{name}", params={"wait": "true"})
            if response.status_code < 300 or response.status_code == 404:
                return
            if response.status_code != 409 or time.monotonic() > end:
                raise BenchError(f"DELETE /v1/vms/{name}: HTTP {response.status_code}: {response.text[:500]}")
            time.sleep(0.5)

    def names(self) -> list[str]:
        return [row["name"] for row in self.call("GET", "/v1/vms")]


# ---- what the benchmark made -----------------------------------------------------------------------


@dataclass
class Made:
    """The agent's VMs to delete at the end (raw domains go by their name prefix)."""

    agent_vms: list[str] = field(default_factory=list)


def guest_spec(name: str, memory: str) -> dict[str, Any]:
    """The tiny guest, as tests/integration/conftest.py builds it; no disks, no NICs."""
    return {
        "name": name,
        "memory": memory,
        "boot": {
            "kernel": {
                "kernel": str(GUEST_DIR / "vmlinuz"),
                "initrd": str(GUEST_DIR / "initrd.img"),
                "cmdline": "console=ttyS0 quiet",
            }
        },
        "guest_agent": False,
    }


def create_agent_vms(api: Api, made: Made, names: list[str], memory: str) -> None:
    made.agent_vms.extend(names)
    each_parallel([partial(api.create, guest_spec(name, memory)) for name in names], workers=4)


def raw_copy(xml: str, name: str, log_file: Path) -> str:
    """The agent-defined domain under a new name and uuid, with its own console log and without vmhost's
    metadata (so the agent never mistakes it for one of its VMs)."""
    root = ET.fromstring(xml)
    _child(root, "name").text = name
    _child(root, "uuid").text = str(uuid.uuid4())
    metadata = root.find("metadata")
    if metadata is not None:
        root.remove(metadata)
    for log in root.iter("log"):
        log.set("file", str(log_file))
    return ET.tostring(root, encoding="unicode")


def _child(root: ET.Element, tag: str) -> ET.Element:
    element = root.find(tag)
    if element is None:
        raise BenchError(f"domain XML has no <{tag}>")
    return element


def write_raw_copies(workspace: Workspace, pairs: list[tuple[str, str]]) -> dict[str, Path]:
    """For each (agent VM, raw name): the raw domain's XML file."""
    files = {}
    for source, name in pairs:
        path = workspace.raw_dir / f"{name}.xml"
        path.write_text(raw_copy(virsh("dumpxml", source), name, workspace.raw_dir / f"{name}.log"))
        files[name] = path
    return files


def raw_create(path: Path) -> None:
    virsh("create", str(path))


def raw_destroy(name: str) -> None:
    virsh("destroy", name)


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
        _settle(partial(api.kill, name))
        raw_seconds = timed(partial(raw_create, xml_file))
        _settle(partial(raw_destroy, raw_name))
        if index > 0:  # run 0 warms connections and caches on both sides
            result.agent.values.append(agent_seconds)
            result.agent_server.values.append(server_seconds)
            result.raw.values.append(raw_seconds)
    return result


def _settle(destroy: Callable[[], object]) -> None:
    destroy()
    time.sleep(SETTLE)


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
    kill_agent = [partial(api.kill, name) for name in names]
    result = ParallelResult(Series(), Series(), Series())
    for index in range(settings.parallel_rounds):
        progress(f"parallel round {index + 1}/{settings.parallel_rounds}")
        result.agent.values.append(wall_parallel([partial(api.start, name) for name in names]))
        _settle(lambda: each_parallel(kill_agent))
        result.raw.values.append(wall_parallel([partial(raw_create, files[name]) for name in raw_names]))
        _settle(lambda: each_parallel([partial(raw_destroy, name) for name in raw_names]))
        result.serial.values.append(timed(lambda: [api.start(name) for name in names]))
        _settle(lambda: each_parallel(kill_agent))
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
    activity: list[str]


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


def table_rows(results: Results, settings: Settings) -> list[list[str]]:
    single, parallel, listing = results.single, results.parallel, results.listing
    single_ratio = single.agent.median / single.raw.median
    parallel_ratio = parallel.agent.median / parallel.raw.median
    serial_ratio = parallel.serial.median / parallel.agent.median
    rss_mb = results.rss_kib["VmRSS"] * 1024 / 1e6
    n = settings.parallel_vms
    return [
        ["#", "measurement", "vmhost", "baseline", "result", "target", "verdict"],
        [
            "1",
            f"single start, median of {len(single.agent.values)}",
            f"API {_fmt(single.agent.median)}",
            f"virsh create {_fmt(single.raw.median)}",
            f"agent/raw {single_ratio:.3f}",
            "<= 1.10",
            verdict(single_ratio <= 1.10),
        ],
        [
            "2a",
            f"{n} starts in parallel, median of {len(parallel.agent.values)}",
            f"API {_fmt(parallel.agent.median)}",
            f"{n}x virsh create {_fmt(parallel.raw.median)}",
            f"agent/raw {parallel_ratio:.3f}",
            "<= 1.15",
            verdict(parallel_ratio <= 1.15),
        ],
        [
            "2b",
            f"{n} starts serial vs parallel (API)",
            f"serial {_fmt(parallel.serial.median)}",
            f"parallel {_fmt(parallel.agent.median)}",
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
    ]
    width = max(len(label) for label, _ in rows)
    return [f"{label.ljust(width)}  {text}" for label, text in rows]


def report(results: Results, settings: Settings) -> str:
    return "\n".join(
        [
            "vmhost benchmarks",
            *machine(),
            f"mode: {settings.mode} ({settings.single_runs} single starts + 1 warm-up each side, "
            f"{settings.parallel_rounds} parallel rounds, {settings.list_requests} list requests after "
            f"{settings.list_warmup} warm-up; guests {settings.memory}, 1 vCPU, TCG)",
            "host activity: " + "; ".join(results.activity),
            "",
            render_table(table_rows(results, settings)),
            "",
            "raw numbers:",
            *("  " + line for line in raw_numbers(results)),
        ]
    )


def progress(message: str) -> None:
    print(f"... {message}", file=sys.stderr, flush=True)


# ---- setup and cleanup -----------------------------------------------------------------------------


def preflight() -> None:
    if os.geteuid() != 0:
        raise BenchError("run as root (it talks to qemu:///system)")
    if not VMHOST.exists():
        raise BenchError(f"{VMHOST} is missing: create the venv first (scripts/setup.sh)")
    for file in ("vmlinuz", "initrd.img"):
        if not (GUEST_DIR / file).is_file():
            raise BenchError(f"{GUEST_DIR / file} is missing: run guest/build.sh")
    virsh("version")


def cleanup(api: Api | None, agent: AgentProcess | None, made: Made, workspace: Workspace | None) -> None:
    """Best effort, every step on its own: API deletes, a virsh sweep of this run's prefix, agent, temp dir."""
    progress("cleaning up")
    if api is not None:
        _quietly(lambda: each_parallel([partial(_quietly, partial(api.delete, name)) for name in made.agent_vms]))
        api.client.close()
    _quietly(_sweep_domains)
    if agent is not None:
        _quietly(agent.stop)
    if workspace is not None:
        shutil.rmtree(workspace.root, ignore_errors=True)


def _sweep_domains() -> None:
    """Whatever the API left behind (or raw copies): every domain named with this run's prefix."""
    for name in virsh("list", "--state-running", "--state-paused", "--name").split():
        if name.startswith(PREFIX):
            _quietly(partial(virsh, "destroy", name))
    for name in virsh("list", "--all", "--name").split():
        if name.startswith(PREFIX):
            _quietly(partial(virsh, "undefine", name))


def _quietly(action: Callable[[], object]) -> None:
    try:
        action()
    except Exception as exc:
        progress(f"cleanup step failed: {exc}")


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Cleanup must finish: ignore Ctrl-C while it runs."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _terminate(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def measure(api: Api, agent: AgentProcess, workspace: Workspace, made: Made, settings: Settings) -> Results:
    activity = [host_activity("before")]
    single = bench_single(api, workspace, made, settings)
    parallel = bench_parallel(api, workspace, made, settings)
    listing = bench_list(api, made, settings)
    activity.append(host_activity("after"))
    return Results(single, parallel, listing, agent.rss_kib(), activity)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions: a smoke run, not a measurement")
    settings = QUICK if parser.parse_args().quick else FULL
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored
    signal.signal(signal.SIGTERM, _terminate)
    made = Made()
    workspace: Workspace | None = None
    agent: AgentProcess | None = None
    api: Api | None = None
    try:
        preflight()
        workspace = make_workspace()
        agent = AgentProcess(workspace)
        progress(f"starting the agent on port {agent.port} (data in {workspace.data_dir}, names {PREFIX}*)")
        agent.start()
        api = Api(agent.url, agent.token())
        results = measure(api, agent, workspace, made, settings)
    except KeyboardInterrupt:
        progress("interrupted")
        return 130
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if agent is not None:
            print(f"agent log (last lines):\n{agent.log_tail()}", file=sys.stderr)
        return 1
    finally:
        with interrupts_deferred():
            cleanup(api, agent, made, workspace)
    print(report(results, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
