"""Plan and apply over HTTP, on the fake hypervisor: the plan is answered synchronously (a dry run 200, a refusal
422 with every reason at its path, nothing to change 200), only real work is a 202 operation, and the convenience
routes are patches through the same plan."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.fakes.driver import FakeHypervisor
from tests.fakes.engines import agent_http, engine_on, spec
from vmhost.client import AgentClient
from vmhost.engine import Engine

MAC = "52:54:00:00:00:09"
HOTPLUG = {"cpu": {"vcpus": 1, "max_vcpus": 2}}


@pytest.fixture
def hypervisor() -> FakeHypervisor:
    return FakeHypervisor()


@pytest.fixture
def engine(hypervisor: FakeHypervisor, tmp_path: Path) -> Engine:
    engine = engine_on(hypervisor, tmp_path / "data")
    engine.create(spec("web", **HOTPLUG), start=True)
    return engine


@pytest.fixture
def http(engine: Engine) -> Iterator[TestClient]:
    with agent_http(engine) as client:
        yield client


def test_a_dry_run_answers_the_plan_at_once_and_changes_nothing(http, engine):
    before = engine.record("web").spec
    response = http.patch("/v1/vms/web", params={"live": "true", "dry_run": "true"}, json={"cpu": {"vcpus": 2}})
    assert response.status_code == 200
    assert response.json()["changes"] == [
        {
            "path": "cpu.vcpus",
            "before": 1,
            "after": 2,
            "how": "live",
            "reason": "vcpu-hotplug: applied to the running VM now",
        }
    ]
    assert engine.record("web").spec == before


def test_a_refused_plan_is_422_at_once_with_every_reason(http, engine):
    before, operations = engine.record("web").spec, len(engine.store.operations("web"))
    patch = {"cpu": {"vcpus": 3, "max_vcpus": 4}, "name": "other"}
    response = http.patch("/v1/vms/web", params={"live": "true"}, json=patch)
    assert response.status_code == 422
    assert [detail["path"] for detail in response.json()["details"]] == ["name", "cpu.vcpus"]
    assert engine.record("web").spec == before and len(engine.store.operations("web")) == operations


def test_nothing_to_change_is_200_and_real_work_is_an_operation(http, engine, hypervisor):
    same = http.patch("/v1/vms/web", json={"memory": "64MiB"})
    assert (same.status_code, same.json()["message"]) == (200, "nothing to change")
    applied = http.patch("/v1/vms/web", params={"live": "true", "wait": "true"}, json={"cpu": {"vcpus": 2}})
    assert applied.status_code == 200 and applied.json()["state"] == "succeeded"
    assert applied.json()["result"]["plan"]["applied"] is True
    assert hypervisor.domains["web"].live["vcpus"] == 2


def test_the_convenience_routes_are_patches_through_the_same_plan(http, engine, hypervisor):
    nic = {"type": "bridge", "source": "br0", "mac": MAC}
    attached = http.post("/v1/vms/web/nics", params={"wait": "true"}, json=nic)
    assert attached.json()["result"]["plan"]["changes"][0]["path"] == f"nics[{MAC}]"
    assert hypervisor.domains["web"].live["nics"] == [MAC]
    planned = http.post("/v1/vms/web/vcpus", params={"dry_run": "true"}, json={"count": 2})
    assert (planned.status_code, planned.json()["changes"][0]["how"]) == (200, "live")
    assert hypervisor.domains["web"].live["vcpus"] == 1, "a dry run"
    assert http.post("/v1/vms/web/vcpus", json={"count": 3}).status_code == 422, "above cpu.max_vcpus"
    assert http.post("/v1/vms/web/nics/52:54:00:00:00:99/detach").status_code == 404
    detached = http.post(f"/v1/vms/web/nics/{MAC}/detach", params={"wait": "true"})
    assert detached.json()["state"] == "succeeded" and hypervisor.domains["web"].live["nics"] == []


def test_the_agent_client_answers_the_plan_as_the_local_engine_does(http, engine, hypervisor):
    client = AgentClient("http://testserver", "unused")
    client._http = http  # the app in this process instead of a socket
    planned = client.update("web", {"cpu": {"vcpus": 2}}, live=True, dry_run=True)
    assert planned == engine.update("web", {"cpu": {"vcpus": 2}}, live=True, dry_run=True).view()
    done = client.update("web", {"cpu": {"vcpus": 2}}, live=True)
    assert (done["applied"], done["message"]) == (True, "1 change applied")
    assert hypervisor.domains["web"].live["vcpus"] == 2
    assert client.update("web", {"cpu": {"vcpus": 2}})["message"] == "nothing to change"
