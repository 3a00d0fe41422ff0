"""Agents on fake hypervisors that reach each other in-process: the source's Peer calls the destination's
engine directly, and a kill inside the destination is the connection dropping (it restarts and recovers)."""

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.eventually import eventually
from tests.fakes.driver import FakeDriver, FakeHypervisor
from tests.fakes.engines import Killed
from vmhost.config import HostConfig
from vmhost.engine import Engine
from vmhost.engine.peer import IncomingOffer, IncomingStatus, IncomingTicket
from vmhost.errors import PeerUnreachable
from vmhost.store.sqlite import Store

T = TypeVar("T")


@dataclasses.dataclass
class Host:
    """One agent and its hypervisor; `restart` is the agent dying and coming back on the same store."""

    name: str
    address: str
    data_dir: Path
    hypervisor: FakeHypervisor
    engine: Engine
    peers: dict[str, "LocalPeer"]
    dead: list[Engine] = dataclasses.field(default_factory=list)
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Config settings of this host's agent beyond make_engine's, kept across restarts."""
    """Engines that 'died': their stores close at the end (an event deferred before the kill may still be
    applied by a thread of theirs, which a real SIGKILL would have ended)."""

    def restart(self) -> None:
        self.hypervisor.sink = None
        self.dead.append(self.engine)
        eventually(lambda: not self.engine.locks.is_held("web"), 5, 0.01, "the dead engine's threads let go")
        self.engine = make_engine(self)
        self.engine.recover()

    def vm_dirs(self) -> list[str]:
        vms = self.data_dir / "vms"
        return sorted(p.name for p in vms.iterdir()) if vms.is_dir() else []


class LocalPeer:
    """The destination agent called in-process. A kill inside it is the connection dropping: the destination
    comes back (restarted and recovered) and the source sees PeerUnreachable, as over HTTP."""

    def __init__(self, host: Host):
        self.host = host
        self.url = f"https://{host.address}:7443"

    def _call(self, call: Callable[[Engine], T]) -> T:
        try:
            return call(self.host.engine)
        except Killed:
            self.host.restart()
            raise PeerUnreachable(f"{self.url} did not answer") from None

    def prepare(self, offer: IncomingOffer) -> IncomingTicket:
        return self._call(lambda engine: engine.accept_incoming(offer))

    def upload_disk(self, migration_id: str, target: str, source: Path) -> None:
        def upload(engine: Engine) -> None:
            engine.incoming_disk(migration_id, target).write_bytes(source.read_bytes())
            engine.check_incoming_upload(migration_id, target)

        self._call(upload)

    def finish(self, migration_id: str) -> None:
        self._call(lambda engine: engine.finish_incoming(migration_id))

    def abort(self, migration_id: str) -> None:
        self._call(lambda engine: engine.abort_incoming(migration_id))

    def status(self, migration_id: str) -> IncomingStatus:
        return self._call(lambda engine: engine.incoming_status(migration_id))

    def close(self) -> None:
        """Nothing is open."""


def make_engine(host: Host, **config: Any) -> Engine:
    settings = {
        "data_dir": host.data_dir,
        "stop_timeout": 0.5,
        "allowed_paths": (host.data_dir,),
        "migration_address": host.address,
        "migration_transport": "tcp",
        "migration_stall_timeout": 1.0,
        **host.settings,
        **config,
    }
    store = Store(host.data_dir / "vmhost.db", synchronous="NORMAL")
    engine = Engine(HostConfig(**settings), FakeDriver(host.hypervisor), store=store, peers=lambda url: host.peers[url])
    host.hypervisor.sink = engine.on_domain_event
    return engine
