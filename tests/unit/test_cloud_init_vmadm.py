"""vmadm payloads tell the guest its addresses, gateways, resolvers, hostname, root keys, user-script and
cloud-init documents: converted into per-NIC guest settings and cloud_init, and rendered back the SmartOS way."""

import copy
from typing import Any

import pytest
import yaml

from vmhost.dialects.vmadm import DialectError, payload_to_spec, validate_payload
from vmhost.dialects.vmadm.guest import USER_SCRIPT
from vmhost.drivers.smartos.update import update_payload
from vmhost.render.cloudinit import render_seed
from vmhost.render.vmadm import problems, render_payload
from vmhost.spec import parse_spec

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKQyXp74Vt80uS2vFNWN2f/9Mysy06wnB8GXMoB6cu+i alice@example"
NIC = {"nic_tag": "external", "model": "virtio", "mac": "52:54:00:00:00:01"}


def payload(**fields: Any) -> dict[str, Any]:
    return {"brand": "bhyve", "alias": "web", **fields}


def refused(document: dict[str, Any]) -> list[str]:
    with pytest.raises(DialectError) as caught:
        payload_to_spec(document)
    assert caught.value.validation.ok  # vmhost's own words, never an entry vmadm would not report
    return [str(problem) for problem in caught.value.problems]


def test_the_usual_smartos_payload_becomes_a_seeded_guest() -> None:
    doc = payload_to_spec(
        payload(
            hostname="web1",
            resolvers=["192.0.2.53", "192.0.2.54"],
            nics=[{**NIC, "ips": ["192.0.2.10/24", "addrconf"], "gateways": ["192.0.2.1"], "primary": True}],
            customer_metadata={"root_authorized_keys": KEY + "\n", "role": "web"},
        )
    )
    assert doc["nics"][0] == {
        "type": "bridge",
        "source": "external",
        "model": "virtio",
        "mac": "52:54:00:00:00:01",
        "addresses": ["192.0.2.10/24"],
        "dhcp6": True,
        "gateway4": "192.0.2.1",
        "dns": {"nameservers": ["192.0.2.53", "192.0.2.54"]},
    }
    assert doc["cloud_init"] == {"hostname": "web1", "users": [{"name": "root", "ssh_authorized_keys": [KEY]}]}
    assert doc["labels"] == {"role": "web"}
    seed = render_seed(parse_spec(doc))
    nic0 = yaml.safe_load(seed.network_config)["ethernets"]["nic0"]
    assert nic0["addresses"] == ["192.0.2.10/24"] and nic0["gateway4"] == "192.0.2.1" and nic0["dhcp6"] is True
    assert yaml.safe_load(seed.meta_data)["local-hostname"] == "web1"


def test_older_ip_netmask_gateway_form() -> None:
    doc = payload_to_spec(payload(nics=[{**NIC, "ip": "10.1.2.3", "netmask": "255.255.255.0", "gateway": "10.1.2.1"}]))
    assert (doc["nics"][0]["addresses"], doc["nics"][0]["gateway4"]) == (["10.1.2.3/24"], "10.1.2.1")
    assert payload_to_spec(payload(nics=[{**NIC, "ip": "dhcp"}]))["nics"][0]["dhcp"] is True
    assert payload_to_spec(payload(nics=[{**NIC, "ips": ["dhcp"]}]))["nics"][0]["dhcp"] is True


def test_ipv6_gateway_goes_to_gateway6() -> None:
    nic = {**NIC, "ips": ["192.0.2.10/24", "2001:db8::10/64"], "gateways": ["192.0.2.1", "2001:db8::1"]}
    entry = payload_to_spec(payload(nics=[nic]))["nics"][0]
    assert (entry["gateway4"], entry["gateway6"]) == ("192.0.2.1", "2001:db8::1")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"nics": [{**NIC, "ips": ["10.0.0.5/24"]}], "routes": {"10.2.0.0/16": "nics[0]"}},
            "routes.10.2.0.0/16: vmhost",
        ),
        (
            {"nics": [{**NIC, "ips": ["10.0.0.5/24"]}], "routes": {"10.2.0.0/16": "10.9.0.1"}},
            "routes.10.2.0.0/16: no NIC",
        ),
        ({"nics": [{**NIC, "ip": "10.1.2.3"}]}, "nics.0.netmask: is needed with a static ip"),
        ({"nics": [{**NIC, "ip": "10.1.2.3", "netmask": "255.0.255.0"}]}, "nics.0.ip: 10.1.2.3/255.0.255.0 is not"),
        (
            {"nics": [{**NIC, "ips": ["10.0.0.5/24"], "gateways": ["10.0.0.1", "10.0.0.2"]}]},
            "nics.0.gateways: vmhost gives a NIC one IPv4 gateway",
        ),
        ({"nics": [{**NIC, "gateways": ["gw.example"]}]}, "nics.0.gateways: 'gw.example' is not an IP address"),
        ({"nics": [NIC], "resolvers": ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"]}, "resolvers: at most 3"),
        ({"resolvers": ["192.0.2.1"]}, "resolvers: vmhost gives resolvers to the guest with a NIC"),
        ({"hostname": "web_1"}, "hostname: must be a host name"),
        ({"customer_metadata": {"root_authorized_keys": "ssh-rsa AAAA"}}, "customer_metadata.root_authorized_keys:"),
        ({"customer_metadata": {"cloud-init:vendor-data": "x"}}, "customer_metadata.cloud-init:vendor-data: vmhost"),
        (
            {"customer_metadata": {"cloud-init:user-data": "#cloud-config\n{}\n", "user-script": "#!/bin/sh\n"}},
            "customer_metadata.cloud-init:user-data: vmhost cannot merge it",
        ),
        (
            {
                "nics": [{**NIC, "ips": ["10.0.0.5/24"]}],
                "customer_metadata": {"cloud-init:network-config": "version: 2\nethernets: {}\n"},
            },
            "customer_metadata.cloud-init:network-config: vmhost cannot merge it",
        ),
    ],
)
def test_what_does_not_fit_is_refused_with_its_payload_path(fields: dict[str, Any], expected: str) -> None:
    found = refused(payload(**fields))
    assert any(problem.startswith(expected) for problem in found), found


def test_gateway_outside_the_subnet_is_the_spec_rule() -> None:
    found = refused(payload(nics=[{**NIC, "ips": ["10.0.0.5/24"], "gateways": ["10.9.0.1"]}]))
    assert found == ["nics.0.gateway4: 10.9.0.1 is outside every static address's subnet (10.0.0.0/24)"]


def test_routes_go_to_the_nic_that_reaches_their_gateway() -> None:
    nics = [{**NIC, "ips": ["10.0.0.5/24"]}, {**NIC, "mac": "52:54:00:00:00:02", "ips": ["10.1.0.5/24"]}]
    doc = payload_to_spec(payload(nics=nics, routes={"10.2.0.0/16": "10.1.0.1", "10.3.3.3": "10.0.0.1"}))
    assert doc["nics"][0]["routes"] == [{"to": "10.3.3.3/32", "via": "10.0.0.1"}]
    assert doc["nics"][1]["routes"] == [{"to": "10.2.0.0/16", "via": "10.1.0.1"}]
    assert render_payload(parse_spec(doc), "bhyve")["routes"] == {"10.2.0.0/16": "10.1.0.1", "10.3.3.3/32": "10.0.0.1"}


def test_user_script_runs_at_every_boot_and_cloud_init_documents_pass_through() -> None:
    doc = payload_to_spec(payload(customer_metadata={"user-script": "#!/bin/sh\necho hi\n"}))
    assert doc["cloud_init"]["write_files"] == [
        {"path": USER_SCRIPT, "content": "#!/bin/sh\necho hi\n", "permissions": "0755"}
    ]
    raw = "#cloud-config\npackages: [curl]\n"
    network = "version: 2\nethernets: {}\n"
    doc = payload_to_spec(
        payload(nics=[NIC], customer_metadata={"cloud-init:user-data": raw, "cloud-init:network-config": network})
    )
    assert doc["cloud_init"] == {"user_data": raw, "network_config": network}
    assert "labels" not in doc


GUEST_SPEC = {
    "name": "web",
    "uuid": "3a1f0d2e-5b6c-4d7e-8f90-a1b2c3d4e5f6",
    "memory": "512MiB",
    "labels": {"role": "web"},
    "nics": [
        {
            "type": "bridge",
            "source": "external",
            "mac": "52:54:00:00:00:01",
            "addresses": ["192.0.2.10/24"],
            "dhcp6": True,
            "gateway4": "192.0.2.1",
            "dns": {"nameservers": ["192.0.2.53"]},
            "routes": [{"to": "198.51.100.0/24", "via": "192.0.2.254"}],
        },
        {"type": "bridge", "source": "internal", "mac": "52:54:00:00:00:02", "dhcp": True},
    ],
    "cloud_init": {"hostname": "web1", "users": [{"name": "alice", "ssh_authorized_keys": [KEY], "sudo": True}]},
}


def test_render_tells_the_guest_the_smartos_way_and_round_trips() -> None:
    spec = parse_spec(copy.deepcopy(GUEST_SPEC))
    assert problems(spec, "bhyve") == []
    rendered = render_payload(spec, "bhyve")
    assert rendered["nics"][0]["ips"] == ["192.0.2.10/24", "addrconf"]
    assert rendered["nics"][0]["gateways"] == ["192.0.2.1"]
    assert rendered["nics"][1]["ips"] == ["dhcp"]
    assert (rendered["hostname"], rendered["resolvers"]) == ("web1", ["192.0.2.53"])
    assert rendered["routes"] == {"198.51.100.0/24": "192.0.2.254"}
    user_data = rendered["customer_metadata"]["cloud-init:user-data"]
    assert yaml.safe_load(user_data)["users"][0]["name"] == "alice"
    assert rendered["customer_metadata"]["role"] == "web"
    again = parse_spec(payload_to_spec(rendered))
    assert render_payload(again, "bhyve") == rendered
    assert again.nics[0].addresses == spec.nics[0].addresses and again.cloud_init is not None
    assert again.cloud_init.hostname == "web1"


def test_render_refuses_what_a_payload_cannot_carry() -> None:
    document = copy.deepcopy(GUEST_SPEC)
    document["nics"][0]["routes"] = [
        {"to": "198.51.100.0/24", "via": "192.0.2.254", "metric": 10},
        {"to": "default", "via": "192.0.2.254"},
    ]
    document["nics"][1]["dns"] = {"nameservers": ["192.0.2.99"]}
    document["cloud_init"]["users"][0]["password_hash"] = "$6$salt$hash"
    assert [path for path, _ in problems(parse_spec(document), "bhyve")] == [
        "cloud_init.users.0.password_hash",
        "nics",
        "nics.0.routes.0.metric",
        "nics.0.routes.1.to",
    ]


def test_a_smartos_vm_is_updated_in_place_with_what_the_guest_is_told() -> None:
    before = copy.deepcopy(GUEST_SPEC)
    before["nics"][0] = {k: v for k, v in before["nics"][0].items() if k in ("type", "source", "mac")}
    del before["cloud_init"]
    current, wanted = (render_payload(parse_spec(copy.deepcopy(doc)), "bhyve") for doc in (before, GUEST_SPEC))
    changes = update_payload(current, wanted)
    assert (changes["hostname"], changes["resolvers"]) == ("web1", ["192.0.2.53"])
    assert changes["set_routes"] == {"198.51.100.0/24": "192.0.2.254"}
    assert changes["update_nics"] == [
        {"mac": "52:54:00:00:00:01", "ips": ["192.0.2.10/24", "addrconf"], "gateways": ["192.0.2.1"]}
    ]
    assert "cloud-init:user-data" in changes["set_customer_metadata"]
    assert validate_payload(changes, "update", "bhyve").ok
    back = update_payload(wanted, current)
    assert back["remove_routes"] == ["198.51.100.0/24"] and back["remove_customer_metadata"] == ["cloud-init:user-data"]
    assert back["update_nics"] == [{"mac": "52:54:00:00:00:01", "ips": [], "gateways": []}]
    assert validate_payload(back, "update", "bhyve").ok
