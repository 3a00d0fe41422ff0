"""HttpPeer (api/peer.py) against a real destination agent: uvicorn serving the agent's app over TLS on loopback,
with a CA made here, and the engine's destination calls stood in for. The token is sent and checked, the
certificate is checked against peer_ca_file, a disk is streamed whole, and every failure names the peer and what
it answered (never the token): no answer and 5xx are PeerUnreachable (worth retrying), the rest its own type."""

import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from tests.eventually import eventually
from tests.fakes.driver import FakeDriver, FakeHypervisor
from tests.fakes.engines import NoEvents
from tests.integration.running_agent import free_port
from tests.unit.test_api_migration import DESTINATION_CALLS, MID, Facade, offer, stand_in_for
from vmhost.api.agent import Agent
from vmhost.api.app import create_app
from vmhost.api.auth import TokenAuth
from vmhost.api.operations import Operations
from vmhost.api.peer import HttpPeer, peer_for, peer_token
from vmhost.config import HostConfig
from vmhost.engine import Engine
from vmhost.engine.peer import IncomingOffer
from vmhost.errors import Conflict, NotFound, PeerUnreachable, Unavailable, VmhostError
from vmhost.host.tokens import ensure_token, read_token
from vmhost.store.sqlite import Store

MIB = 1 << 20


@dataclass
class Tls:
    ca: Path
    cert: Path
    key: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A test CA and a certificate it signed for 127.0.0.1 (EC keys: a few milliseconds each)."""
    d = tmp_path_factory.mktemp("tls")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req",
        "-x509",
        *ec,
        "-days",
        "1",
        "-subj",
        "/CN=vmhost test CA",
        "-keyout",
        f"{d}/ca.key",
        "-out",
        f"{d}/ca.pem",
    )
    _openssl("req", *ec, "-subj", "/CN=127.0.0.1", "-keyout", f"{d}/agent.key", "-out", f"{d}/agent.csr")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        "x509", "-req", "-in", f"{d}/agent.csr", "-CA", f"{d}/ca.pem", "-CAkey", f"{d}/ca.key", "-CAcreateserial",
        "-days", "1", "-extfile", f"{d}/san.ext", "-out", f"{d}/agent.pem",
    )  # fmt: skip
    return Tls(ca=d / "ca.pem", cert=d / "agent.pem", key=d / "agent.key")


@dataclass
class Destination:
    url: str
    token: str
    facade: Facade
    engine: Engine


@pytest.fixture
def destination(tls: Tls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Destination]:
    """The destination agent's app over HTTPS, its engine's incoming calls stood in for."""
    data = tmp_path / "destination"
    config = HostConfig(data_dir=data, allowed_paths=(data,))
    engine = Engine(config, FakeDriver(FakeHypervisor()), store=Store(config.db_path, synchronous="NORMAL"))
    placeholder = tmp_path / "vda.qcow2"
    placeholder.write_bytes(b"placeholder")
    facade = Facade(placeholder)
    stand_in_for(engine, facade, monkeypatch, DESTINATION_CALLS)
    ensure_token(data)
    agent = Agent(config, engine, Operations(journal=engine), TokenAuth(data, ()), NoEvents())
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(agent),
            host="127.0.0.1",
            port=port,
            ssl_certfile=str(tls.cert),
            ssl_keyfile=str(tls.key),
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    eventually(lambda: server.started, 10, 0.05, "the destination agent's start")
    try:
        yield Destination(f"https://127.0.0.1:{port}", str(read_token(data)), facade, engine)
    finally:
        server.should_exit = True
        thread.join(10)
        engine.store.close()


def source_config(tmp_path: Path, destination: Destination, tls: Tls | None, token: str | None = None) -> HostConfig:
    token_file = tmp_path / "token-for-destination"
    token_file.write_text((token or destination.token) + "\n")
    return HostConfig(
        data_dir=tmp_path / "source",
        peer_token_files={destination.url: token_file},
        peer_ca_file=tls.ca if tls else None,
    )


@pytest.fixture
def peer(tmp_path: Path, destination: Destination, tls: Tls) -> Iterator[HttpPeer]:
    with peer_for(source_config(tmp_path, destination, tls), destination.url) as client:
        yield client


def test_a_migrations_calls_reach_the_destination_with_the_token(peer, destination):
    ticket = peer.prepare(IncomingOffer.model_validate(offer()))
    assert ticket.migration_id == MID and ticket.copy_disks == ("vda",)
    assert peer.status(MID) == "prepared"
    peer.finish(MID)
    assert peer.status(MID) == "finished"
    assert [call[0] for call in destination.facade.calls] == ["accept", "finish"]


def test_a_disk_is_streamed_whole_into_the_placeholder(peer, destination, tmp_path):
    disk = tmp_path / "vda-source.qcow2"
    disk.write_bytes(b"QFI\xfb" + bytes(range(256)) * (3 * MIB // 256) + b"end")
    peer.upload_disk(MID, "vda", disk)
    assert destination.facade.placeholder.read_bytes() == disk.read_bytes()
    assert ("check", "vda") in destination.facade.calls


def test_a_disk_larger_than_offered_is_refused_naming_the_peer(peer, destination, tmp_path):
    destination.facade.limit = MIB
    disk = tmp_path / "big.raw"
    disk.write_bytes(b"z" * (2 * MIB))
    with pytest.raises(VmhostError) as refused:
        peer.upload_disk(MID, "vda", disk)
    assert refused.value.message == (
        f"the agent at {destination.url} refused the copy of disk vda (413): "
        f"disk vda: the upload is larger than the disk offered ({MIB} bytes at most)"
    )
    assert destination.facade.placeholder.read_bytes() == b"placeholder"


def test_abort_is_idempotent(peer, destination):
    peer.abort(MID)
    peer.abort(MID)
    assert peer.status(MID) == "unknown"


def test_the_destinations_refusal_keeps_its_type_and_names_the_peer(peer, destination, monkeypatch):
    def refuse(_offer: IncomingOffer) -> None:
        raise Conflict("web exists on this host already")

    monkeypatch.setattr(destination.engine, "accept_incoming", refuse)
    with pytest.raises(Conflict) as refused:
        peer.prepare(IncomingOffer.model_validate(offer()))
    assert refused.value.message == (
        f"the agent at {destination.url} refused the prepare (409): web exists on this host already"
    )


def test_a_disk_the_destination_does_not_take_is_not_found(peer, tmp_path):
    disk = tmp_path / "vdb.raw"
    disk.write_bytes(b"x")
    with pytest.raises(NotFound, match="takes no disk vdb"):
        peer.upload_disk(MID, "vdb", disk)


def test_a_5xx_answer_is_worth_retrying(peer, destination, monkeypatch):
    def restarting(_migration_id: str) -> None:
        raise Unavailable("libvirtd is restarting")

    monkeypatch.setattr(destination.engine, "finish_incoming", restarting)
    with pytest.raises(PeerUnreachable, match=r"refused the finish \(503\): libvirtd is restarting"):
        peer.finish(MID)


def test_a_wrong_token_is_refused_and_never_shown(tmp_path, destination, tls):
    wrong = "w" * 40
    with (
        peer_for(source_config(tmp_path, destination, tls, token=wrong), destination.url) as client,
        pytest.raises(VmhostError) as refused,
    ):
        client.status(MID)
    assert "refused the status question (401)" in refused.value.message
    assert "peer_token_files" in str(refused.value.detail)
    assert wrong not in f"{refused.value.message} {refused.value.detail}"
    assert destination.token not in f"{refused.value.message} {refused.value.detail}"


def test_a_certificate_not_signed_by_peer_ca_file_is_refused_not_retried(tmp_path, destination):
    with (
        peer_for(source_config(tmp_path, destination, tls=None), destination.url) as client,
        pytest.raises(VmhostError) as refused,
    ):
        client.status(MID)
    assert not isinstance(refused.value, PeerUnreachable)
    assert "is not trusted: set peer_ca_file" in refused.value.message


def test_no_agent_listening_is_unreachable(tmp_path):
    token = tmp_path / "token"
    token.write_text("t" * 40)
    url = f"https://127.0.0.1:{free_port()}"
    with (
        peer_for(HostConfig(data_dir=tmp_path, peer_token_files={"*": token}), url) as client,
        pytest.raises(PeerUnreachable, match=f"the agent at {url} did not answer the status question"),
    ):
        client.status(MID)


def test_the_default_token_is_the_star_entry_and_a_missing_one_names_the_setting(tmp_path):
    star, own = tmp_path / "star", tmp_path / "own"
    star.write_text("s" * 40)
    own.write_text("o" * 40)
    files = {"https://a.test:7070": own, "*": star}
    config = HostConfig(data_dir=tmp_path, peer_token_files=files)
    assert peer_token(config, "https://A.test:7070") == "o" * 40
    assert peer_token(config, "https://b.test:7070") == "s" * 40
    with pytest.raises(VmhostError, match=r"no token for the agent at https://b.test:7070: set peer_token_files"):
        peer_token(HostConfig(data_dir=tmp_path, peer_token_files={"https://a.test:7070": own}), "https://b.test:7070")
    star.unlink()
    with pytest.raises(VmhostError, match=r"^peer_token_files: cannot read the token file .*star for the agent at"):
        peer_token(config, "https://b.test:7070")
