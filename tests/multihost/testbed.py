"""The multi-host test bed from Python: scripts/test-hosts.sh makes, runs and removes the hosts; this module only
calls it and reads its JSON (one implementation of the bed).

Each host is a network namespace on the bridge of the root namespace with its own libvirtd, virtlogd and
`vmhost serve` (HTTPS with the bed's CA); `shared_dir` is at the same path on every host and libvirt counts it as
shared storage. A fleet bed (`up(n, fleet=True)`) also runs one etcd in the root namespace on the bridge's address
(`TestHost.etcd_endpoint`, reached from every host), and each agent's config has a [fleet] table naming it.
"""

import dataclasses
import json
import os
import ssl
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import libvirt

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "test-hosts.sh"


class TestBedError(Exception):
    """The script failed: its output says why."""


@dataclass(frozen=True)
class TestBed:
    """One bed, named by the script's environment (root, prefix, subnet); the default is the bed others share."""

    __test__ = False

    env: Mapping[str, str] = field(default_factory=dict)
    """VMHOST_TESTBED_ROOT / _PREFIX / _SUBNET for a second bed next to the shared one; empty: the bed the
    environment names (by default the shared one)."""

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(SCRIPT), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **self.env},
            check=False,
        )
        if check and result.returncode != 0:
            raise TestBedError(f"test-hosts.sh {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def up(self, count: int = 2, fleet: bool = False) -> list["TestHost"]:
        """fleet: with an etcd, and each agent in the fleet ([fleet] in its config; VMHOST_TESTBED_LEASE_TTL in
        `env` sets its lease_ttl, default 10)."""
        return self._hosts(self.run("up", str(count), *(["--fleet"] if fleet else [])).stdout)

    def down(self) -> None:
        self.run("down")

    def status(self) -> list["TestHost"] | None:
        """The running bed's hosts, or None when no bed is up."""
        result = self.run("status", check=False)
        return self._hosts(result.stdout) if result.returncode == 0 else None

    def leftovers(self) -> list[str]:
        """What of this bed exists on the machine (netns, links, mounts, its directory, processes, listeners on its
        address such as its etcd)."""
        return [line for line in self.run("leftovers").stdout.splitlines() if line.strip()]

    def kill_etcd(self) -> None:
        """SIGKILL the fleet bed's etcd, as a crash; its data stays. (The per-test cleanup does not start it
        again: fleet tests run on beds of their own.)"""
        self.run("kill-etcd")

    def start_etcd(self) -> None:
        """Start the fleet bed's etcd again on the same data and wait until it is healthy."""
        self.run("start-etcd")

    def etcd_running(self) -> bool:
        hosts = json.loads(self.run("status").stdout)
        return bool(hosts and hosts[0]["etcd_running"])

    def pause_agent(self, host: "TestHost") -> None:
        host.pause_agent()

    def resume_agent(self, host: "TestHost") -> None:
        host.resume_agent()

    def _hosts(self, document: str) -> list["TestHost"]:
        return [TestHost.from_json(item, self) for item in json.loads(document)]


DISTURBED: set[tuple[str, str]] = set()
"""(host dir, daemon) this process killed or started with extra environment: what the per-test cleanup puts back.
Only those: other sessions run fault injection on the shared bed at the same time."""


@dataclass(frozen=True)
class TestHost:
    """One host of the bed, as `up`/`status` describe it; the methods act on it through the script."""

    __test__ = False

    name: str
    hostname: str
    address: str
    agent_url: str
    agent_token: str
    token_file: Path
    libvirt_uri: str
    """That host's libvirtd as reached from the root namespace (qemu+tcp://ADDRESS/system)."""
    migration_uri: str
    host_uuid: str
    dir: Path
    data_dir: Path
    config_file: Path
    ca_file: Path
    cert_file: Path
    key_file: Path
    shared_dir: Path
    images_dir: Path
    netns: str
    mount_ns: Path
    uts_ns: Path
    agent_pid_file: Path
    agent_log: Path
    libvirtd_pid_file: Path
    """For VMHOST_TEST_KILL_PIDFILE: the agent kills this libvirtd at a fault point."""
    libvirtd_log: Path
    libvirtd_debug_log: Path
    qemu_log_dir: Path
    virtlogd_pid_file: Path
    guest_bridge: str
    """A bridge for VM NICs ({type: bridge, source: …}), the same name on every host."""
    vmhost_binary: Path
    """The `vmhost` the agent runs (JSON key "vmhost")."""
    fleet: bool = False
    """A fleet bed's host: its agent's config has [fleet] (etcd_endpoint, host_name = name) and agent_url."""
    etcd_endpoint: str | None = None
    """The fleet bed's etcd (http://SUBNET.1:2379, in the root namespace, reached from every host); None without."""
    etcd_pid_file: Path | None = None
    etcd_log: Path | None = None
    etcd_data_dir: Path | None = None
    bed: TestBed = field(default_factory=TestBed, compare=False, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], bed: TestBed) -> "TestHost":
        """Fields the dataclass does not know (status adds agent_running, libvirtd_running) are left out."""
        data = {**data, "vmhost_binary": data["vmhost"]}
        values: dict[str, Any] = {}
        for item in dataclasses.fields(cls):
            if item.name in data:
                value = data[item.name]
                values[item.name] = Path(value) if item.type in (Path, Path | None) and value is not None else value
        return cls(**values, bed=bed)

    def http(self, timeout: float = 120, token: str | None = None) -> httpx.Client:
        """A client of the agent: its base URL, its token (or `token`; "" sends none), the bed's CA."""
        token = self.agent_token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(
            base_url=self.agent_url,
            headers=headers,
            verify=ssl.create_default_context(cafile=self.ca_file),
            timeout=timeout,
        )

    def libvirt(self) -> libvirt.virConnect:
        """A new connection to this host's libvirtd (the caller closes it)."""
        return libvirt.open(self.libvirt_uri)

    def kill_agent(self) -> None:
        """SIGKILL, as a crash; its VMs keep running."""
        DISTURBED.add((str(self.dir), "agent"))
        self.bed.run("kill-agent", self.name)

    def start_agent(self, env: Mapping[str, str] | None = None) -> None:
        """Start the agent (with `env` added, e.g. VMHOST_TEST_KILL_AT) and wait until it answers /healthz."""
        self.bed.run("start-agent", self.name, *(f"{key}={value}" for key, value in (env or {}).items()))
        if env:
            DISTURBED.add((str(self.dir), "agent"))
        else:
            DISTURBED.discard((str(self.dir), "agent"))

    def restart_agent(self, env: Mapping[str, str] | None = None) -> None:
        self.kill_agent()
        self.start_agent(env)

    def pause_agent(self) -> None:
        """SIGSTOP the agent, a hung host: it answers nothing and renews no lease until resume_agent (or a
        kill_agent). On the shared bed the per-test cleanup restarts it."""
        DISTURBED.add((str(self.dir), "agent"))
        self.bed.run("pause-agent", self.name)

    def resume_agent(self) -> None:
        """SIGCONT the paused agent."""
        self.bed.run("resume-agent", self.name)

    def kill_libvirtd(self) -> None:
        """SIGKILL, as a crash; its QEMUs keep running."""
        DISTURBED.add((str(self.dir), "libvirtd"))
        self.bed.run("kill-libvirtd", self.name)

    def start_libvirtd(self) -> None:
        """Start libvirtd and wait until it answers."""
        self.bed.run("start-libvirtd", self.name)
        DISTURBED.discard((str(self.dir), "libvirtd"))

    def running(self) -> dict[str, bool]:
        """{"agent": …, "libvirtd": …}: whether each runs now (a paused agent runs)."""
        item = self._status()
        return {"agent": item["agent_running"], "libvirtd": item["libvirtd_running"]}

    def agent_paused(self) -> bool:
        return bool(self._status()["agent_paused"])

    def _status(self) -> dict[str, Any]:
        result = self.bed.run("status", check=False)
        for item in json.loads(result.stdout or "[]"):
            if item["name"] == self.name:
                return dict(item)
        raise TestBedError(f"{self.name} is not in the bed: {result.stderr}")

    def etcdctl(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """etcdctl (API v3) against the fleet bed's etcd, from the root namespace (no check: callers assert)."""
        if self.etcd_endpoint is None:
            raise TestBedError(f"{self.name} is not in a fleet bed")
        return subprocess.run(
            ["etcdctl", "--endpoints", self.etcd_endpoint, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "ETCDCTL_API": "3"},
            check=False,
        )

    def exec(
        self, argv: Sequence[str], timeout: float = 120, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run argv inside this host's network, mount and UTS namespaces (no check: callers assert)."""
        prefix = ["env", *(f"{key}={value}" for key, value in env.items())] if env else []
        return self.bed.run("exec", self.name, "--", *prefix, *argv, timeout=timeout, check=False)

    def vmhost(
        self, *args: str, timeout: float = 180, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """The `vmhost` CLI inside this host with its config (local engine on its data dir; add
        `--agent self.agent_url` for agent mode: the bed's CA is trusted through SSL_CERT_FILE)."""
        settings = {"VMHOST_CONFIG": str(self.config_file), "SSL_CERT_FILE": str(self.ca_file), **(env or {})}
        return self.exec([str(self.vmhost_binary), *args], timeout=timeout, env=settings)

    def domains(self) -> list[str]:
        """Names of the domains this host's libvirtd knows (running or defined)."""
        conn = self.libvirt()
        try:
            return sorted(domain.name() for domain in conn.listAllDomains())
        finally:
            conn.close()
