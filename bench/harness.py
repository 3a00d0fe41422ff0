"""What every measurement needs: settings, statistics, the agent subprocess, its HTTP API, the VMs made, and their raw
copies (the same domains started with virsh)."""

import os
import secrets
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
DEBIAN_DIR = Path(os.environ.get("VMHOST_DEBIAN_IMAGE_DIR", "/var/lib/vmhost/images/debian-12-cloud"))
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
    exit_runs: int  # each of measurements 5 and 6, after one warm-up
    parallel_vms: int = 10
    list_vms: int = 100
    memory: str = "128MiB"


FULL = Settings(mode="full", single_runs=7, parallel_rounds=5, list_requests=1000, list_warmup=100, exit_runs=5)
QUICK = Settings(mode="quick", single_runs=2, parallel_rounds=1, list_requests=200, list_warmup=20, exit_runs=1)


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
            f"median {fmt(self.median)}, min {fmt(min(self.values))}, max {fmt(max(self.values))} "
            f"(n={len(self.values)}): " + " ".join(fmt(v) for v in self.values)
        )


def minus(later: Series, earlier: Series) -> Series:
    """Run by run: later - earlier."""
    return Series([a - b for a, b in zip(later.values, earlier.values, strict=True)])


def fmt(seconds: float) -> str:
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


def wait_until(check: Callable[[], object], what: str, timeout: float, poll: float = 0.05) -> float:
    """Poll every `poll` seconds until `check` holds; the perf_counter time at which it first did. BenchError
    naming `what` at the timeout. The benches' one polling helper."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: not within {timeout:.0f}s")
        time.sleep(poll)
    return time.perf_counter()


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
        f'allowed_paths = ["{GUEST_DIR}", "{DEBIAN_DIR}"]\n'  # the host files bench specs name: the guests' kernels
    )
    return workspace


class AgentProcess:
    """`vmhost serve` in its own session (so Ctrl-C reaches only us, and we can still clean up through it)."""

    def __init__(self, workspace: Workspace):
        self.workspace = workspace
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.spawned_at = self.ready_at = 0.0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, poll: float = 0.1) -> None:
        """Spawn and wait for /healthz; `spawned_at` and `ready_at` (time.time()) say when, `poll` how finely."""
        env = {**os.environ, "VMHOST_CONFIG": str(self.workspace.config)}
        self.spawned_at = time.time()
        with self.workspace.agent_log.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603
                [str(VMHOST), "serve", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._wait_ready(poll)

    def _wait_ready(self, poll: float, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.process is not None and self.process.poll() is not None:
                raise BenchError(f"the agent exited ({self.process.returncode}):\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    self.ready_at = time.time()
                    return
            except httpx.HTTPError:
                pass
            time.sleep(poll)
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

    def console_log(self, name: str) -> str:
        response = self.client.get(f"/v1/vms/{name}/console/log")
        if response.status_code != 200:
            raise BenchError(f"GET /v1/vms/{name}/console/log: HTTP {response.status_code}: {response.text[:500]}")
        return response.text

    def names(self) -> list[str]:
        return [row["name"] for row in self.call("GET", "/v1/vms")]


# ---- what the benchmark made -----------------------------------------------------------------------


@dataclass
class Made:
    """The agent's VMs to delete at the end (raw domains go by their name prefix)."""

    agent_vms: list[str] = field(default_factory=list)


@dataclass
class Session:
    """The run's temp dir, its agent and API client, and what it made: what the cleanup needs. A measurement
    that restarts the agent replaces `agent` and `api` here, so the cleanup always reaches the live one."""

    made: Made = field(default_factory=Made)
    workspace: Workspace | None = None
    agent: AgentProcess | None = None
    api: Api | None = None

    def start_agent(self, poll: float = 0.1) -> AgentProcess:
        """A new agent on the same data dir (and a fresh port); `agent` is set before it is up, for the cleanup."""
        assert self.workspace is not None
        if self.api is not None:
            self.api.client.close()
            self.api = None
        self.agent = AgentProcess(self.workspace)
        self.agent.start(poll)
        self.api = Api(self.agent.url, self.agent.token())
        return self.agent

    def stop_agent(self) -> float:
        """SIGTERM and wait for the exit; seconds it took. The VMs stay as they are (no shutdown_on_sigterm)."""
        if self.api is not None:
            self.api.client.close()
            self.api = None
        assert self.agent is not None
        return timed(self.agent.stop)


def guest_spec(name: str, memory: str, **fields: Any) -> dict[str, Any]:
    """The tiny guest, as tests/integration/conftest.py builds it; no disks, no NICs."""
    return {
        "name": name,
        "memory": memory,
        "boot": {
            "kernel": {
                "kernel": str(GUEST_DIR / "vmlinuz"),
                "initrd": str(GUEST_DIR / "initrd.img"),
                # no_timer_check: on a loaded TCG host the kernel's IO-APIC timer check can fail and panic
                "cmdline": "console=ttyS0 quiet no_timer_check",
            }
        },
        "guest_agent": False,
        **fields,
    }


def create_agent_vms(api: Api, made: Made, names: list[str], memory: str, **fields: Any) -> None:
    made.agent_vms.extend(names)
    each_parallel([partial(api.create, guest_spec(name, memory, **fields)) for name in names], workers=4)


# ---- raw copies: the same domains, started with virsh ----------------------------------------------


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


def settle(destroy: Callable[[], object]) -> None:
    destroy()
    time.sleep(SETTLE)


def parallel_starts(api: Api, names: list[str], raw_files: dict[str, Path]) -> tuple[float, float]:
    """One round: every VM started at once through the API, then every raw copy `virsh create`d at once; the
    wall time of each, and each side killed (and settled) before the other begins."""
    agent = wall_parallel([partial(api.start, name) for name in names])
    settle(lambda: each_parallel([partial(api.kill, name) for name in names]))
    raw = wall_parallel([partial(raw_create, path) for path in raw_files.values()])
    settle(lambda: each_parallel([partial(raw_destroy, name) for name in raw_files]))
    return agent, raw


def progress(message: str) -> None:
    print(f"... {message}", file=sys.stderr, flush=True)


def quietly(action: Callable[[], object]) -> None:
    """A cleanup step that fails is reported, and the rest of the cleanup still runs."""
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


def terminate(_signum: int, _frame: FrameType | None) -> None:
    """SIGTERM as Ctrl-C: the run cleans up what it made."""
    raise KeyboardInterrupt
