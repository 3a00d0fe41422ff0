"""GET /v1/vms at scale, on the fake hypervisor: without params every VM as a JSON list (clients that expect a list
keep working); state, field and label filters, the order and the fields chosen on the agent; `limit` pages linked by
a Link rel="next" header whose cursor neither skips nor repeats a VM while VMs come and go; answers made once per
store change (their speed at 1000 VMs is bench/scale.py's); the CLI's agent backend asks the agent to select."""

import base64
import json
import uuid
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from rich.console import Console

from tests.fakes.driver import FakeHypervisor
from tests.fakes.engines import agent_http, engine_on, spec
from vmhost.cli import listing
from vmhost.cli.backend import LocalBackend
from vmhost.client import AgentClient
from vmhost.engine import Engine
from vmhost.engine.views import FIELDS
from vmhost.store.sqlite import Store


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = engine_on(FakeHypervisor(), tmp_path / "data")
    engine.create(spec("api", labels={"tier": "web"}, memory="128MiB"), start=True)
    engine.create(spec("db", labels={"tier": "data"}, cpu={"vcpus": 2}), start=False)
    engine.create(spec("web", labels={"tier": "web"}), start=False)
    return engine


@pytest.fixture
def http(engine: Engine) -> Iterator[TestClient]:
    with agent_http(engine) as client:
        yield client


def names(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [row["name"] for row in response.json()]


def every_page(http: TestClient, **params: Any) -> list[list[str]]:
    """Each page's names, following the Link rel=next headers from the first page to the last."""
    pages, response = [], http.get("/v1/vms", params=params)
    while True:
        pages.append(names(response))
        if "next" not in response.links:
            return pages
        response = http.get(response.links["next"]["url"])


def test_without_params_every_vm_is_a_row_of_every_field_and_there_is_no_next_page(http):
    response = http.get("/v1/vms")
    rows = response.json()
    assert [row["name"] for row in rows] == ["api", "db", "web"]
    assert "link" not in response.headers
    assert set(rows[0]) == set(FIELDS)
    assert (rows[0]["state"], rows[0]["memory"], rows[0]["labels"]) == ("running", "128MiB", {"tier": "web"})


def test_state_field_and_label_filters_run_on_the_agent(http):
    assert names(http.get("/v1/vms", params={"state": "stopped"})) == ["db", "web"]
    assert names(http.get("/v1/vms", params={"label.tier": "web"})) == ["api", "web"]
    assert names(http.get("/v1/vms", params={"label.tier": "web", "state": "stopped"})) == ["web"]
    assert names(http.get("/v1/vms", params={"vcpus": "2"})) == ["db"]
    assert names(http.get("/v1/vms", params={"label.owner": "ops"})) == []


def test_a_filter_on_no_field_is_400_naming_it_and_a_bogus_state_is_422(http):
    for key in ("colour", "labels", "label."):
        refused = http.get("/v1/vms", params={key: "x"})
        assert refused.status_code == 400, key
        assert f"cannot filter on {key!r}" in refused.json()["message"]
        assert "label.KEY" in refused.json()["message"]
    assert http.get("/v1/vms", params={"state": "bogus"}).status_code == 422


def test_fields_picks_the_columns_in_the_asked_order(http):
    rows = http.get("/v1/vms", params={"fields": "state,name", "sort": "-name"}).json()
    assert rows == [
        {"state": "stopped", "name": "web"},
        {"state": "stopped", "name": "db"},
        {"state": "running", "name": "api"},
    ]
    assert list(rows[0]) == ["state", "name"]
    unknown = http.get("/v1/vms", params={"fields": "name,ip"})
    assert unknown.status_code == 400 and "unknown field 'ip'" in unknown.json()["message"]


def test_sorting_by_labels_is_refused_naming_the_sortable_fields(http):
    refused = http.get("/v1/vms", params={"sort": "labels"})
    assert refused.status_code == 400
    assert "cannot sort by 'labels'; fields: name, uuid" in refused.json()["message"]


def test_limit_pages_link_to_the_next_one_until_the_last(http):
    assert every_page(http, limit=2, fields="name") == [["api", "db"], ["web"]]
    assert every_page(http, limit=3) == [["api", "db", "web"]], "a full last page links to nothing"
    assert http.get("/v1/vms", params={"limit": 0}).status_code == 422


def test_the_next_link_keeps_the_query_and_only_adds_the_cursor(http):
    first = http.get("/v1/vms", params={"limit": 1, "fields": "name", "label.tier": "web", "sort": "-name"})
    link = first.links["next"]["url"]
    assert link.startswith("/v1/vms?limit=1&fields=name&label.tier=web&sort=-name&after=")
    assert names(http.get(link)) == ["api"]


@pytest.mark.parametrize("sort", [None, "-name", "-memory", "memory", "state,-name", "vcpus,-memory", "name,state"])
def test_paging_in_any_order_gives_the_unpaged_listing(http, engine, sort):
    for index in range(4):
        engine.create(spec(f"more-{index}", memory=f"{64 * (index % 2 + 1)}MiB"), start=False)
    params = {"sort": sort} if sort else {}
    whole = names(http.get("/v1/vms", params=params))
    pages = every_page(http, limit=2, **params)
    assert [name for page in pages for name in page] == whole
    assert all(len(page) == 2 for page in pages[:-1])


def test_the_next_page_starts_right_after_the_last_row_shown_whatever_came_and_went(http, engine):
    first = http.get("/v1/vms", params={"limit": 2, "fields": "name"})
    assert names(first) == ["api", "db"]
    engine.delete("api")
    engine.delete("db")  # the cursor's own row
    engine.create(spec("cache"), start=False)  # sorts before the cursor: a later page never shows it
    engine.create(spec("zoo"), start=False)
    assert names(http.get(first.links["next"]["url"])) == ["web", "zoo"], "an offset would have skipped web"


def test_a_cursor_of_another_order_or_not_a_cursor_at_all_is_400(http):
    cursor = http.get("/v1/vms", params={"limit": 1}).links["next"]["url"].split("after=")[1]
    forged = base64.urlsafe_b64encode(json.dumps(["name", 7]).encode()).decode()
    for params in ({"after": cursor, "sort": "-name"}, {"after": "nope"}, {"after": forged}):
        refused = http.get("/v1/vms", params=params)
        assert refused.status_code == 400, params
        assert refused.json()["message"].startswith("after: not a cursor of this listing"), params
    assert names(http.get("/v1/vms", params={"after": cursor, "sort": "name"})) == ["db", "web"], "same order"


def test_the_answer_follows_every_store_change_also_from_another_process(http, engine):
    before = http.get("/v1/vms").content
    assert http.get("/v1/vms").content == before
    engine.start("db")
    assert http.get("/v1/vms", params={"fields": "name,state", "limit": 2}).json()[1] == {
        "name": "db",
        "state": "running",
    }
    other = Store(engine.config.db_path)  # e.g. the CLI on this host's database
    try:
        other.update_vm("web", state="crashed")
    finally:
        other.close()
    assert names(http.get("/v1/vms", params={"state": "crashed"})) == ["web"]


def test_the_store_decodes_again_only_the_rows_that_changed(engine):
    before = {record.name: record for record in engine.store.list_vms()}
    engine.store.update_vm("db", state="crashed")
    after = {record.name: record for record in engine.store.list_vms()}
    assert after["api"] is before["api"] and after["web"] is before["web"]
    assert after["db"].state == "crashed"
    engine.store.delete_vm("web")
    assert [record.name for record in engine.store.list_vms()] == ["api", "db"]


def test_at_1000_vms_each_answer_from_memory_follows_the_change_before_it(http, engine):
    """How fast is bench/scale.py's question (p50/p99 side by side, idle machine); this is that the cache is right."""
    template = engine.record("web").spec
    for index in range(997):
        name = f"vm-{index:04d}"
        document = {**template, "name": name, "labels": {"tier": "web", "n": str(index)}}
        engine.store.insert_vm(
            name, uuid=str(uuid.uuid4()), driver="fake", spec=document, state="stopped", owned_paths=[]
        )
    assert len(names(http.get("/v1/vms"))) == 1000
    for index in range(100):
        engine.store.update_vm(f"vm-{index:04d}", state="running")
        running = names(http.get("/v1/vms", params={"state": "running"}))
        assert len(running) == index + 2 and f"vm-{index:04d}" in running


def test_the_agent_client_has_the_agent_select_what_the_local_backend_selects(http, engine):
    client = AgentClient("http://testserver", "unused")
    client._http = http  # the app in this process instead of a socket
    asked: list[str] = []
    http.event_hooks["request"] = [lambda request: asked.append(str(request.url))]
    local = LocalBackend(engine)
    for filters, sort, fields in [
        ({"label.tier": "web"}, None, []),
        ({"state": "stopped"}, "-name", ["name", "state"]),
        ({}, "-memory,name", ["name", "memory", "labels"]),
    ]:
        assert client.list_rows(filters, sort, fields) == local.list_rows(filters, sort, fields)
    assert asked[1] == "http://testserver/v1/vms?state=stopped&sort=-name&fields=name%2Cstate"


def test_the_cli_asks_for_the_name_with_live_fields_and_prints_labels_as_it_filters_them():
    assert listing.stored_fields(["ip"]) == ["name"]
    assert listing.stored_fields(["state", "ip"]) == ["name", "state"]
    assert listing.stored_fields(["name", "labels"]) == ["name", "labels"]
    printed = StringIO()
    rows = [{"name": "api", "labels": {"tier": "web", "owner": "ops"}}]
    listing.render(rows, ["name", "labels"], as_json=False, parsable=True, header=False, console=Console(file=printed))
    assert printed.getvalue() == "api:tier=web,owner=ops\n"
