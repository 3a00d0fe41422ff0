"""The NIC tuning on a real VM: a tap on a test bridge, the agent with the installed plugins, libvirt/QEMU
(TCG) and the tiny guest, whose virtio driver asks QEMU for the tap's offloads once it runs."""

import json
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from tests.integration.conftest import wait_for_console
from tests.integration.running_agent import RunningAgent
from vmhost_nic_tuning.ethtool import features_of

pytestmark = pytest.mark.integration

TUNED = {"generic-segmentation-offload": False, "generic-receive-offload": False}


@pytest.fixture
def agent(config, engine) -> Iterator[RunningAgent]:
    """The plain agent: plugins/conftest.py also loads the ZStack suite, whose `agent` would win otherwise.
    `engine` (same data dir) deletes every VM the agent made when the test ends."""
    with RunningAgent(config) as running:
        yield running


def vm_with_a_tap(guest_spec: Any, name: str, bridge: str, **fields: Any) -> tuple[dict[str, Any], str]:
    tap = f"vmhnt{secrets.token_hex(3)}"
    return guest_spec(name, nics=[{"type": "bridge", "source": bridge, "tap": tap}], **fields), tap


def events_of(http: httpx.Client, name: str) -> list[dict[str, Any]]:
    stream = http.get("/v1/events", params={"vm": name}).text
    return [json.loads(line.removeprefix("data: ")) for line in stream.splitlines() if line.startswith("data: ")]


# Tests take `bridge` before `agent`, so the VMs go before their bridge.


def test_offloads_are_turned_off_while_the_domain_is_paused(bridge, agent, http, guest_spec, vm_name):
    name = vm_name("nic-tuning")
    spec, tap = vm_with_a_tap(guest_spec, name, bridge)

    started = http.post("/v1/vms", params={"start": "true", "wait": "true"}, json=spec).json()
    assert started["state"] == "succeeded", started

    record = http.get(f"/ext/nic-tuning/vms/{name}").json()
    assert record["domain_state"] == "paused"
    (device,) = record["devices"]
    assert (device["device"], device["features"], device["after"]) == (tap, ["gso", "gro"], TUNED)
    assert device["before"] == dict.fromkeys(TUNED, True), "QEMU leaves GSO and GRO on"

    wait_for_console(agent.agent.engine, name, "VMHOST-GUEST-DEVICES-DONE")  # the guest's virtio-net is up
    running = features_of("ethtool", tap)
    assert {feature: running[feature] for feature in TUNED} == TUNED

    events = [(event["type"], event["state"]) for event in events_of(http, name)]
    hook = events.index(("hook", ""))
    assert events.index(("state", "starting")) < hook < events.index(("state", "running"))
    (note,) = [event["reason"] for event in events_of(http, name) if event["type"] == "hook"]
    assert note == f"nic-tuning (start-paused): turned gso, gro off on {tap} (domain paused)"


@pytest.mark.parametrize(
    ("settings", "block", "refusal"),
    [
        ({}, {"features": ["no-such-feature"]}, "{tap}: `ethtool -k` does not list no-such-feature"),
        ({"ethtool": "/bin/false"}, {}, "/bin/false -k {tap} failed (exit 1)"),
    ],
    ids=["feature-the-tap-lacks", "failing-ethtool"],
)
def test_tuning_that_fails_refuses_the_start_naming_the_plugin(
    settings, block, refusal, bridge, config, engine, guest_spec, vm_name, libvirt_conn
):
    name = vm_name("nic-tuning-bad")
    spec, tap = vm_with_a_tap(guest_spec, name, bridge, extensions={"nic-tuning": block})
    with RunningAgent(replace(config, plugins={"nic-tuning": settings})) as agent:
        refused = httpx.post(
            f"{agent.url}/v1/vms",
            params={"start": "true", "wait": "true"},
            json=spec,
            headers={"Authorization": f"Bearer {agent.token}"},
            timeout=120,
        )
    assert (refused.status_code, refused.json()["code"]) == (409, "hook_failed"), refused.text
    expected = "plugin nic-tuning failed in start-paused: " + refusal.format(tap=tap)
    assert refused.json()["message"].startswith(expected)
    assert name not in [domain.name() for domain in libvirt_conn.listAllDomains()], "the create was rolled back"
    assert subprocess.run(["ip", "link", "show", tap], capture_output=True, check=False).returncode != 0
