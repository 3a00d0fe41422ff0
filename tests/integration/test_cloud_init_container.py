"""A container on a bridge gets the spec's guest networking from vmhost itself (no cloud-init in a container):
static addresses and routes on its veth, its resolv.conf and hostname, on the real runc."""

import pytest

from tests.integration.test_containers import bridge, engine, rootfs, run, spec  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration

SCRIPT = "ip -o addr show eth0; ip route; ip -6 route; echo RESOLV; cat /etc/resolv.conf; echo HOST=$(hostname)"


def test_bridge_veth_gets_addresses_routes_dns_and_hostname(engine, rootfs, bridge):  # noqa: F811
    document = spec(
        "addressed",
        {"type": "directory", "path": str(rootfs)},
        SCRIPT,
        hostname="edge-2",
        network={
            "mode": "bridge",
            "bridge": bridge,
            "addresses": ["192.0.2.20/24", "2001:db8::20/64"],
            "gateway4": "192.0.2.1",
            "routes": [{"to": "198.51.100.0/24", "via": "192.0.2.254", "metric": 50}],
            "dns": {"nameservers": ["192.0.2.53", "192.0.2.54"], "search": ["example.test"]},
        },
    )
    log = run(engine, document)
    assert "inet 192.0.2.20/24" in log and "inet6 2001:db8::20/64" in log, log
    assert "default via 192.0.2.1 dev eth0" in log, log
    assert "198.51.100.0/24 via 192.0.2.254 dev eth0" in log and "metric 50" in log, log
    resolv = log.split("RESOLV", 1)[1].split("HOST=", 1)[0]
    assert resolv.split() == ["nameserver", "192.0.2.53", "nameserver", "192.0.2.54", "search", "example.test"]
    assert "HOST=edge-2" in log


def test_without_dns_the_image_keeps_its_own_resolv_conf(engine, rootfs, bridge):  # noqa: F811
    (rootfs / "etc").mkdir(exist_ok=True)
    (rootfs / "etc" / "resolv.conf").write_text("nameserver 203.0.113.9\n")
    document = spec(
        "own-resolv",
        {"type": "directory", "path": str(rootfs)},
        "cat /etc/resolv.conf; ip -o addr show eth0",
        network={"mode": "bridge", "bridge": bridge, "addresses": ["192.0.2.21/24"]},
    )
    log = run(engine, document)
    assert "nameserver 203.0.113.9" in log and "inet 192.0.2.21/24" in log, log
