"""The migration routes over HTTP, on the fake hypervisor with the engine's migration facade stood in for: the
source's operations (202, progress, result), their refusals before anything runs (the destination's URL and
token, the body's fields by path), and the destination's routes (offer, bounded streamed upload, finish, abort,
status) with their path checks and auth."""

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.eventually import eventually
from tests.fakes.driver import FakeDriver, FakeHypervisor
from tests.fakes.engines import agent_http, spec
from vmhost.api.migration import Uploads
from vmhost.api.operations import report_progress
from vmhost.config import HostConfig
from vmhost.engine import Engine
from vmhost.engine.evacuate import Evacuated
from vmhost.engine.events import VmEvent
from vmhost.engine.peer import IncomingOffer, IncomingTicket, MigrationRequest
from vmhost.errors import Conflict, HostResourceError, NotFound
from vmhost.host.tokens import create_token
from vmhost.store.sqlite import Store

DEST = "https://dest.test:7070"
MID = "0123456789abcdef0123456789abcdef"
MIB = 1 << 20
PHASE_LINE = "phase memory 42% remaining 12 MiB downtime 30 ms"


@dataclass
class Facade:
    """Engine.migrate, evacuate and the destination's calls, recorded; the disk placeholder is a real file."""

    placeholder: Path
    limit: int = 4 * MIB
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    status: str = "prepared"
    hold: threading.Event | None = None
    engine: Engine | None = None
    upload_refusal: Exception | None = None

    def migrate(self, name: str, to: str, request: MigrationRequest) -> None:
        self.calls.append(("migrate", name, to, request))
        if self.hold is not None and self.engine is not None:
            events = self.engine.events
            event = VmEvent(vm=name, uuid="", type="migration", state="", reason=PHASE_LINE)
            watchdog = threading.Thread(target=events.publish, args=(event,))  # the engine's watchdog: no operation
            watchdog.start()
            watchdog.join()
            assert self.hold.wait(10)

    def evacuate(self, to: list[str], request: MigrationRequest, concurrency: int | None) -> list[Evacuated]:
        self.calls.append(("evacuate", to, request, concurrency))
        return [Evacuated("db", to[1], ok=False, error="db is paused by its guest"), Evacuated("web", to[0], ok=True)]

    def accept_incoming(self, offer: IncomingOffer) -> IncomingTicket:
        self.calls.append(("accept", offer))
        return IncomingTicket(migration_id=offer.migration_id, copy_disks=tuple(offer.disks))

    def incoming_disk(self, migration_id: str, target: str) -> Path:
        if target != "vda":
            raise NotFound(f"the incoming migration {migration_id} takes no disk {target}")
        return self.placeholder

    def incoming_upload_limit(self, migration_id: str, target: str) -> int:
        return self.limit

    def check_incoming_upload(self, migration_id: str, target: str) -> None:
        self.calls.append(("check", target))
        if self.upload_refusal is not None:
            raise self.upload_refusal

    def finish_incoming(self, migration_id: str) -> None:
        self.calls.append(("finish", migration_id))
        self.status = "finished"

    def abort_incoming(self, migration_id: str) -> None:
        self.calls.append(("abort", migration_id))
        self.status = "unknown"

    def incoming_status(self, migration_id: str) -> str:
        return self.status


@pytest.fixture
def config(tmp_path: Path) -> HostConfig:
    token = tmp_path / "peer-token"
    token.write_text("p" * 40 + "\n")
    data = tmp_path / "data"
    return HostConfig(data_dir=data, stop_timeout=0.5, allowed_paths=(data,), peer_token_files={DEST: token})


@pytest.fixture
def engine(config: HostConfig) -> Engine:
    hypervisor = FakeHypervisor()
    engine = Engine(config, FakeDriver(hypervisor), store=Store(config.db_path, synchronous="NORMAL"))
    engine.progress = report_progress
    hypervisor.sink = engine.on_domain_event
    engine.create(spec("web"), start=True)
    return engine


DESTINATION_CALLS = (
    "accept_incoming",
    "incoming_disk",
    "incoming_upload_limit",
    "check_incoming_upload",
    "finish_incoming",
    "abort_incoming",
    "incoming_status",
)


def stand_in_for(engine: Engine, facade: Facade, monkeypatch: pytest.MonkeyPatch, calls: tuple[str, ...]) -> None:
    """The engine's migration calls go to the recording facade."""
    for name in calls:
        monkeypatch.setattr(engine, name, getattr(facade, name))


@pytest.fixture
def facade(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Facade:
    placeholder = tmp_path / "vda.qcow2"
    placeholder.write_bytes(b"placeholder")
    stand_in = Facade(placeholder, engine=engine)
    stand_in_for(engine, stand_in, monkeypatch, ("migrate", "evacuate", *DESTINATION_CALLS))
    return stand_in


@pytest.fixture
def http(engine: Engine, facade: Facade) -> Iterator[TestClient]:
    with agent_http(engine) as client:
        yield client


def offer(**changes: Any) -> dict[str, Any]:
    body = {
        "migration_id": MID,
        "spec": spec("web"),
        "source_url": "https://src.test:7070",
        "offline": True,
        "copy_storage": True,
        "disks": {"vda": {"size": 2 * MIB, "format": "qcow2"}},
    }
    return {**body, **changes}


# ---- source: migrate and evacuate -----------------------------------------------------------------


def test_migrate_is_an_operation_whose_result_names_the_vm_and_the_destination(http, facade):
    body = {"to": DEST + "/", "copy_storage": True, "bandwidth_mib": 100, "auto_converge": True, "timeout": 60}
    response = http.post("/v1/vms/web/migrate", json=body, params={"wait": "true"})
    assert response.status_code == 200, response.text
    operation = response.json()
    assert (operation["kind"], operation["vm"], operation["state"]) == ("migrate", "web", "succeeded")
    assert operation["result"] == {"name": "web", "to": DEST}
    request = MigrationRequest(copy_storage=True, bandwidth_mib=100, auto_converge=True, timeout=60)
    assert facade.calls == [("migrate", "web", DEST, request)]


def test_a_running_migration_shows_its_progress_and_holds_the_vm(http, facade):
    """The phase lines come from the engine's watchdog thread, as events."""
    facade.hold = threading.Event()
    started = http.post("/v1/vms/web/migrate", json={"to": DEST})
    assert started.status_code == 202 and started.headers["Location"] == f"/v1/operations/{started.json()['id']}"

    def progress() -> str:
        return str(http.get(f"/v1/operations/{started.json()['id']}").json()["progress"])

    assert eventually(lambda: progress() == PHASE_LINE, 10, 0.05, "the phase line as the progress")
    busy = http.post("/v1/vms/web/stop")
    assert (busy.status_code, busy.json()["code"]) == (409, "conflict")
    facade.hold.set()
    done = http.get(f"/v1/operations/{started.json()['id']}", params={"wait": "true"}).json()
    assert done["state"] == "succeeded"


def test_a_destination_without_a_token_is_refused_before_anything_runs(http, facade):
    response = http.post("/v1/vms/web/migrate", json={"to": "https://other.test:7070"})
    assert response.status_code == 400
    message = response.json()["message"]
    assert "no token for the agent at https://other.test:7070" in message and "peer_token_files" in message
    assert facade.calls == [] and http.get("/v1/operations").json() == []


def test_a_token_file_that_is_gone_is_named_with_its_setting(http, facade, config):
    config.peer_token_files[DEST].unlink()
    response = http.post("/v1/vms/web/migrate", json={"to": DEST})
    assert response.status_code == 400
    assert response.json()["message"].startswith("peer_token_files: cannot read the token file")
    assert DEST in response.json()["message"] and facade.calls == []


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"to": DEST, "bandwidth_mib": 0}, "body.bandwidth_mib"),
        ({"to": DEST, "timeout": -1}, "body.timeout"),
        ({"to": DEST, "stall_timeout": 0}, "body.stall_timeout"),
        ({"to": DEST, "live": True}, "body.live"),
        ({"copy_storage": True}, "body.to"),
    ],
)
def test_bad_fields_are_422_at_their_path(http, facade, body, path):
    response = http.post("/v1/vms/web/migrate", json=body)
    assert response.status_code == 422
    assert [detail["path"] for detail in response.json()["details"]] == [path]
    assert facade.calls == []


@pytest.mark.parametrize(
    ("to", "said"),
    [
        ("http://dest.test:7070", "over https only"),
        ("https://dest.test:7070/v1", "without a path"),
        ("dest.test:7070", "is not an agent URL"),
    ],
)
def test_a_destination_that_is_no_agent_url_is_refused(http, facade, to, said):
    response = http.post("/v1/vms/web/migrate", json={"to": to})
    assert response.status_code == 400 and said in response.json()["message"]
    assert facade.calls == []


def test_migrating_a_vm_that_is_not_there_is_404(http, facade):
    assert http.post("/v1/vms/nope/migrate", json={"to": DEST}).status_code == 404


def test_evacuate_reports_each_vm_with_ok_or_its_error(http, facade, config):
    second = "https://dest2.test:7070"
    config.peer_token_files[second] = config.peer_token_files[DEST]
    body = {"to": [DEST, second], "concurrency": 3, "auto_converge": True}
    operation = http.post("/v1/host/evacuate", json=body, params={"wait": "true"}).json()
    assert (operation["kind"], operation["vm"], operation["state"]) == ("evacuate", None, "succeeded")
    assert operation["result"] == {
        "vms": [
            {"vm": "db", "to": second, "ok": False, "error": "db is paused by its guest"},
            {"vm": "web", "to": DEST, "ok": True, "error": None},
        ],
        "migrated": 1,
        "failed": 1,
    }
    assert facade.calls == [("evacuate", [DEST, second], MigrationRequest(auto_converge=True), 3)]


def test_evacuate_needs_a_destination_and_every_token(http, facade):
    assert http.post("/v1/host/evacuate", json={"to": []}).json()["details"][0]["path"] == "body.to"
    refused = http.post("/v1/host/evacuate", json={"to": [DEST, "https://unknown.test:7070"]})
    assert refused.status_code == 400 and "https://unknown.test:7070" in refused.json()["message"]
    assert facade.calls == []


def test_a_read_only_token_may_not_migrate(http, facade, config):
    reader = create_token(config.data_dir, "reader", read_only=True)
    response = http.post("/v1/vms/web/migrate", json={"to": DEST}, headers={"Authorization": f"Bearer {reader}"})
    assert response.status_code == 403 and facade.calls == []


# ---- destination: the peer's calls ----------------------------------------------------------------


def test_an_offer_is_answered_with_the_engines_ticket(http, facade):
    response = http.post("/v1/migrations/incoming", json=offer())
    assert response.status_code == 200
    assert response.json()["migration_id"] == MID and response.json()["copy_disks"] == ["vda"]
    assert facade.calls[0][0] == "accept" and facade.calls[0][1].disks["vda"].size == 2 * MIB


def test_a_malformed_offer_is_422_at_its_path(http, facade):
    response = http.post("/v1/migrations/incoming", json=offer(migration_id="../../x"))
    assert response.status_code == 422 and response.json()["details"][0]["path"] == "body.migration_id"
    assert facade.calls == []


def test_the_incoming_routes_need_the_token(http, facade):
    anonymous = {"Authorization": ""}
    for method, path in (
        ("POST", "/v1/migrations/incoming"),
        ("PUT", f"/v1/migrations/incoming/{MID}/disks/vda"),
        ("POST", f"/v1/migrations/incoming/{MID}/finish"),
        ("DELETE", f"/v1/migrations/incoming/{MID}"),
        ("GET", f"/v1/migrations/incoming/{MID}"),
    ):
        assert http.request(method, path, headers=anonymous, content=b"x").status_code == 401, path
    assert facade.calls == []


@pytest.mark.parametrize(
    ("path", "where"),
    [
        (f"/v1/migrations/incoming/{MID.upper()}", "path.migration_id"),
        ("/v1/migrations/incoming/" + "x" * 32, "path.migration_id"),
        (f"/v1/migrations/incoming/{MID}/disks/vda1", "path.target"),
        (f"/v1/migrations/incoming/{MID}/disks/state.db", "path.target"),
        (f"/v1/migrations/incoming/{MID}/disks/..%2F..%2Fstate.db", None),
    ],
)
def test_ids_and_targets_are_checked_before_use(http, facade, path, where):
    """422 at the parameter; an encoded slash makes a path no route has (404)."""
    method = "PUT" if "/disks/" in path else "GET"
    response = http.request(method, path, content=b"data")
    if where is None:
        assert response.status_code == 404
    else:
        assert response.status_code == 422 and response.json()["details"][0]["path"] == where
    assert facade.placeholder.read_bytes() == b"placeholder" and facade.calls == []


def test_an_upload_larger_than_max_body_bytes_but_within_the_disk_is_written_whole(http, facade, config):
    data = b"".join(bytes([n]) * MIB for n in (1, 0, 2)) + b"tail"
    assert len(data) > config.max_body_bytes
    response = http.put(f"/v1/migrations/incoming/{MID}/disks/vda", content=data)
    assert response.status_code == 200, response.text
    assert response.json() == {"target": "vda", "bytes": len(data)}
    assert facade.placeholder.read_bytes() == data
    assert facade.placeholder.stat().st_blocks * 512 < len(data), "the zero MiB is a hole"
    assert ("check", "vda") in facade.calls, "the engine checks what arrived"


def test_an_upload_declared_larger_than_the_disk_is_413_and_nothing_is_written(http, facade):
    facade.limit = MIB
    response = http.put(f"/v1/migrations/incoming/{MID}/disks/vda", content=b"x" * (MIB + 1))
    assert (response.status_code, response.json()["code"]) == (413, "payload_too_large")
    assert "1048576 bytes at most" in response.json()["message"]
    assert facade.placeholder.read_bytes() == b"placeholder"


def test_a_chunked_upload_is_cut_off_at_the_disks_size(http, facade):
    facade.limit = 2 * MIB

    def chunks() -> Iterator[bytes]:
        for _ in range(8):
            yield b"y" * MIB

    response = http.put(f"/v1/migrations/incoming/{MID}/disks/vda", content=chunks())
    assert (response.status_code, response.json()["code"]) == (413, "payload_too_large")
    assert facade.placeholder.stat().st_size <= 2 * MIB
    assert ("check", "vda") in facade.calls, "a broken-off upload has the engine make the placeholder empty again"


def test_an_upload_the_engine_refuses_is_its_error(http, facade):
    facade.upload_refusal = HostResourceError("the upload of disk vda is not a qcow2 image of 2097152 bytes")
    response = http.put(f"/v1/migrations/incoming/{MID}/disks/vda", content=b"not an image")
    assert response.status_code == 409 and "not a qcow2 image" in response.json()["message"]


def test_an_upload_for_a_disk_the_migration_does_not_copy_is_404(http, facade):
    response = http.put(f"/v1/migrations/incoming/{MID}/disks/vdb", content=b"x")
    assert response.status_code == 404


def test_other_routes_keep_max_body_bytes(http, facade, config):
    response = http.post("/v1/migrations/incoming", content=b"{" + b" " * config.max_body_bytes + b"}")
    assert (response.status_code, response.json()["code"]) == (413, "payload_too_large")
    assert facade.calls == []


def test_finish_then_status_then_abort_again_and_again(http, facade):
    assert http.get(f"/v1/migrations/incoming/{MID}").json() == {"status": "prepared"}
    assert http.post(f"/v1/migrations/incoming/{MID}/finish").json() == {"status": "finished"}
    facade.status = "prepared"
    first = http.delete(f"/v1/migrations/incoming/{MID}")
    again = http.delete(f"/v1/migrations/incoming/{MID}")
    assert first.json() == again.json() == {"status": "unknown"}
    assert first.status_code == again.status_code == 200
    assert [call[0] for call in facade.calls] == ["finish", "abort", "abort"]


def test_one_upload_per_disk_at_a_time():
    """A second upload into a placeholder while one streams is refused (409), not interleaved with it."""
    uploads = Uploads()
    with uploads.one(MID, "vda"):
        with pytest.raises(Conflict, match="being uploaded already"), uploads.one(MID, "vda"):
            pass
        with uploads.one(MID, "vdb"):
            pass
    with uploads.one(MID, "vda"):
        pass


def test_the_routes_are_in_the_openapi_document(http, facade):
    paths = http.get("/openapi.json").json()["paths"]
    assert {"/v1/vms/{vm}/migrate", "/v1/host/evacuate", "/v1/migrations/incoming"} <= set(paths)
    upload = paths["/v1/migrations/incoming/{migration_id}/disks/{target}"]["put"]
    assert "application/octet-stream" in upload["requestBody"]["content"] and "413" in upload["responses"]
