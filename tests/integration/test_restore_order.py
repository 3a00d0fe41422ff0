"""The restore after a host reboot and the host shutdown on real libvirt, with a few tiny guests: the ordered
group starts first, the next group's VMs start in parallel (their journaled starts overlap), and
`POST /v1/host/shutdown` stops them in reverse order; the next agent start restores them."""

from dataclasses import replace

from tests.eventually import eventually
from tests.integration.running_agent import RunningAgent
from vmhost.store.sqlite import OperationRecord


def _start_of(engine, name: str) -> OperationRecord:
    [start] = [op for op in engine.store.operations(name) if op.kind == "start"][:1]
    assert start.state == "succeeded" and start.finished_at is not None
    return start


def test_restore_starts_groups_in_order_and_a_group_in_parallel(config, engine, guest_spec, vm_name, libvirt_conn):
    first, second, third = vm_name("rs-db"), vm_name("rs-app1"), vm_name("rs-app2")
    for name, order in ((first, 1), (second, 2), (third, 2)):
        engine.create(guest_spec(name, memory="128MiB", startup={"order": order}), start=True)
    for name in (first, second, third):  # the host went down: the domains are off, the store says running
        libvirt_conn.lookupByName(name).destroy()
    with RunningAgent(replace(config, restore_concurrency=2)) as agent, agent.http() as http:
        view = eventually(
            lambda: (body := http.get("/v1/host/restore").json())["state"] == "done" and body, 120, 0.2, "the restore"
        )
        assert (view["total"], view["running"], view["failed"]) == (3, 3, 0)
        db, app1, app2 = (_start_of(agent.agent.engine, name) for name in (first, second, third))
        assert db.finished_at <= min(app1.started_at, app2.started_at)  # order 1 is up before order 2 begins
        assert max(app1.started_at, app2.started_at) < min(app1.finished_at, app2.finished_at)  # in parallel
        assert all(libvirt_conn.lookupByName(name).isActive() for name in (first, second, third))

        shutdown = http.post("/v1/host/shutdown", json={"timeout": 30}, params={"wait": "true"}).json()
        assert [group["order"] for group in shutdown["result"]["groups"]] == [2, 1]
        assert shutdown["result"]["failed"] == []
        assert not any(libvirt_conn.lookupByName(name).isActive() for name in (first, second, third))
    with RunningAgent(config) as agent, agent.http() as http:  # the host is back
        eventually(lambda: http.get("/v1/host/restore").json()["state"] == "done", 120, 0.2, "the second restore")
        assert all(libvirt_conn.lookupByName(name).isActive() for name in (first, second, third))
