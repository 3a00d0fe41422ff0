"""Fleet tests on a real etcd with agents on fake hypervisors: each test has its own key prefix, each host its own
engine and reconciler (the real ones), and the hosts reach each other in-process for migrations."""

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from tests.eventually import eventually
from tests.fakes.driver import NETWORK, FakeHypervisor
from tests.fakes.hosts import Host, LocalPeer, make_engine
from tests.fleet.etcd_server import EtcdServer
from vmhost.config import FleetConfig
from vmhost.fleet.control import Fleet
from vmhost.fleet.etcd import Etcd
from vmhost.fleet.model import Keys
from vmhost.fleet.reconciler import Reconciler


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    server = EtcdServer(tmp_path_factory.mktemp("etcd"))
    server.start()
    yield server
    server.stop()


@dataclass
class FleetHost:
    """One agent of the fleet: its engine on a fake hypervisor and its reconciler."""

    host: Host
    config: FleetConfig
    reconciler: Reconciler | None = None
    reconcilers: list[Reconciler] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.host.name

    @property
    def engine(self) -> Any:
        return self.host.engine

    def start(self, etcd: Etcd | None = None) -> Reconciler:
        self.reconciler = Reconciler(self.host.engine, self.host.engine.config, self.config, etcd)
        self.reconcilers.append(self.reconciler)
        self.reconciler.start()
        return self.reconciler

    def stop(self) -> None:
        """The agent goes away (its lease is left to expire, as a killed agent's would)."""
        if self.reconciler is not None:
            self.reconciler.close()
            self.reconciler = None

    def restart(self) -> Reconciler:
        """The agent dies and comes back: a new engine on the same store and hypervisor, recovered, then a new
        reconciler on the same data directory."""
        self.stop()
        self.host.restart()
        return self.start()

    def state(self, vm: str) -> str | None:
        record = self.host.engine.store.get_vm(vm)
        return record.state if record else None


@dataclass
class FleetBed:
    keys: Keys
    etcd: Etcd
    control: Fleet
    hosts: list[FleetHost]

    def host(self, name: str) -> FleetHost:
        return next(h for h in self.hosts if h.name == name)

    def registered(self) -> set[str]:
        return {Keys.last(e.key) for e in self.etcd.range(self.keys.host())[0]}

    def where(self, vm: str) -> list[str]:
        """Hosts on which the VM runs (or is paused) right now: never more than one."""
        return [h.name for h in self.hosts if h.state(vm) in ("running", "paused")]

    def settled(self, vm: str, state: str = "running") -> bool:
        rows = {row["name"]: row for row in self.control.vms()}
        row = rows.get(vm)
        return bool(row and row["state"] == state and row["observed_generation"] == row["generation"])


def fleet_config(endpoint: str, prefix: str, name: str, **settings: Any) -> FleetConfig:
    return replace(
        FleetConfig(etcd_endpoints=(endpoint,), host_name=name, prefix=prefix, lease_ttl=2),
        labels={"index": name[-1]},
        **settings,
    )


@contextlib.contextmanager
def fleet_of(
    tmp_path: Path, endpoint: str, count: int = 3, started: bool = True, **settings: Any
) -> Iterator[FleetBed]:
    prefix = f"/t{secrets.token_hex(4)}"
    peers: dict[str, LocalPeer] = {}
    hosts: list[FleetHost] = []
    for index in range(1, count + 1):
        hypervisor = FakeHypervisor()
        host = Host(f"host{index}", f"10.9.1.{index}", tmp_path / f"host{index}", hypervisor, None, peers)  # type: ignore[arg-type]
        host.data_dir.mkdir(parents=True)
        host.settings = {"agent_url": f"https://{host.address}:7443", "memory_reserve": 0}
        host.engine = make_engine(host)
        NETWORK[host.address] = hypervisor
        peers[f"https://{host.address}:7443"] = LocalPeer(host)
        hosts.append(FleetHost(host, fleet_config(endpoint, prefix, host.name, **settings)))
    etcd = Etcd(hosts[0].config)
    fleet = FleetBed(Keys(prefix), etcd, Fleet(etcd, Keys(prefix)), hosts)
    try:
        if started:
            for fleet_host in hosts:
                fleet_host.start()
            eventually(lambda: fleet.registered() == {h.name for h in hosts}, 10, 0.05, "every host registered")
        yield fleet
    finally:
        for fleet_host in hosts:
            fleet_host.stop()
            NETWORK.pop(fleet_host.host.address, None)
            for engine in [*fleet_host.host.dead, fleet_host.host.engine]:
                engine.store.close()


@pytest.fixture
def fleet(tmp_path: Path, etcd_server: EtcdServer) -> Iterator[FleetBed]:
    with fleet_of(tmp_path, etcd_server.endpoint) as made:
        yield made
