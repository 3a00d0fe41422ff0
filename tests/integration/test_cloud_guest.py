"""A real Debian 12 guest with real cloud-init, reached over SSH: the slow test (one full boot, about a minute
under idle TCG, a few under load).

The image comes from scripts/debian-image.sh (run by scripts/setup.sh; cached). The test imports it with
`vmhost image import`, creates a VM from it with a 4 GiB disk, a static address, a gateway, two nameservers, a
hostname and a user with a key it generates, and then checks through SSH to that address, from a network
namespace joined to the VM's own test bridge (tests/integration/netns.py), what cloud-init made of the seed.
"""

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.eventually import eventually
from tests.integration.conftest import (
    PREFIX,
    REPO,
    URI,
    allowed_test_roots,
    cli_runner,
    make_data_dir,
    write_config_file,
    write_json,
)
from tests.integration.netns import IsolatedNetwork, isolated_network, leftovers
from vmhost.config import HostConfig
from vmhost.drivers.select import build_drivers
from vmhost.engine import Engine

IMAGE_DIR = Path(os.environ.get("VMHOST_DEBIAN_IMAGE_DIR", "/var/lib/vmhost/images/debian-12-cloud"))
SSH_TIMEOUT = 600.0
"""Boot + cloud-init + sshd: about a minute under idle TCG; a loaded 2-core machine takes several."""
NAMESERVERS = ("192.0.2.53", "198.51.100.53")
HOSTNAME = "cloudy"
USER = "tester"

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class CloudGuest:
    """The booted guest and how to reach it."""

    net: IsolatedNetwork
    address: str
    key: Path
    mac: str
    image_size: int
    control: Path
    """One SSH connection serves every command (each new login starts a user session: tens of seconds on TCG)."""

    def ssh(self, command: str, key: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run `command` in the guest as the cloud-init user, over SSH from the namespace; with `key`, on a
        connection of its own."""
        options = ["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=90"]
        options += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
        if key is None:
            options += ["-o", "ControlMaster=auto", "-o", f"ControlPath={self.control}", "-o", "ControlPersist=900"]
        else:
            options += ["-o", "ControlPath=none"]
        argv = ["ssh", *options, "-i", str(key or self.key), f"{USER}@{self.address}", command]
        return self.net.run(argv, timeout=180)

    def close(self) -> None:
        """End the shared connection (its master process runs in the background)."""
        self.net.run(["ssh", "-o", f"ControlPath={self.control}", "-O", "exit", f"{USER}@{self.address}"])

    def check(self, command: str) -> str:
        result = self.ssh(command)
        assert result.returncode == 0, f"{command}: exit {result.returncode}: {result.stderr}"
        return result.stdout


@pytest.fixture(scope="module")
def debian_image() -> Path:
    """Built by setup; the script returns at once when its stamp is current."""
    script = REPO / "scripts" / "debian-image.sh"
    subprocess.run([str(script), str(IMAGE_DIR)], check=True, capture_output=True, timeout=1800)
    return IMAGE_DIR


@pytest.fixture(scope="module")
def vmhost_cli(
    tmp_path_factory: pytest.TempPathFactory, _no_leftovers: None
) -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    """The real `vmhost` command on a fresh data dir that may read the image's directory; every VM and image it
    made is deleted afterwards (an imported copy is 500 MB)."""
    data_dir = make_data_dir(tmp_path_factory)
    roots = (*allowed_test_roots(data_dir), IMAGE_DIR)
    config = HostConfig(libvirt_uri=URI, data_dir=data_dir, accel="tcg", stop_timeout=30, allowed_paths=roots)
    config_file = write_config_file(config, data_dir.parent / f"{data_dir.name}.toml")
    yield cli_runner(config_file, default_timeout=600)
    engine = Engine(config, build_drivers(config))
    for record in engine.store.list_vms():
        engine.delete(record.name)
    for image in engine.list_images():
        engine.delete_image(image.name)
    engine.store.close()


@pytest.fixture(scope="module")
def network() -> Iterator[IsolatedNetwork]:
    with isolated_network() as net:
        yield net


@pytest.fixture(scope="module")
def cloud_guest(
    debian_image: Path,
    vmhost_cli: Callable[..., subprocess.CompletedProcess[str]],
    network: IsolatedNetwork,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CloudGuest]:
    """Import the image, create and start the VM, wait until its user can log in over SSH."""
    tmp = tmp_path_factory.mktemp("cloud-guest")
    key = tmp / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    imported = vmhost_cli("image", "import", str(debian_image / "disk.qcow2"), "--name", "debian-12", "--json")
    assert imported.returncode == 0, imported.stderr
    image = json.loads(imported.stdout)

    address = network.guest_address(10)
    name = PREFIX + "cloud"
    spec = {
        "name": name,
        "memory": "512MiB",
        "boot": {
            "kernel": {
                "kernel": str(debian_image / "vmlinuz"),
                "initrd": str(debian_image / "initrd.img"),
                "cmdline": (debian_image / "cmdline").read_text().strip(),
            }
        },
        "disks": [{"image": "debian-12", "size": "4GiB"}],
        "nics": [
            {
                "type": "bridge",
                "source": network.bridge,
                "addresses": [str(address)],
                "gateway4": str(network.client.ip),
                "dns": {"nameservers": list(NAMESERVERS)},
            }
        ],
        "cloud_init": {
            "hostname": HOSTNAME,
            "users": [{"name": USER, "ssh_authorized_keys": [key.with_suffix(".pub").read_text()], "sudo": True}],
        },
        "guest_agent": False,
    }
    created = vmhost_cli("create", "-f", str(write_json(tmp / "spec.json", spec)), "--start")
    assert created.returncode == 0, created.stderr
    view = json.loads(vmhost_cli("get", name).stdout)
    guest = CloudGuest(
        net=network,
        address=str(address.ip),
        key=key,
        mac=view["nics"][0]["mac"],
        image_size=image["virtual_size"],
        control=tmp / "ssh.control",
    )

    def logged_in() -> bool:
        result = guest.ssh("true")
        assert result.returncode == 0, result.stderr.strip()
        return True

    try:
        eventually(logged_in, SSH_TIMEOUT, 3.0, f"SSH login as {USER}@{guest.address}")
    except AssertionError as failure:
        console = vmhost_cli("console", name, "--log").stdout
        raise AssertionError(f"{failure}\nconsole (last lines):\n{console[-3000:]}") from None
    yield guest
    guest.close()


def test_hostname_is_the_one_in_cloud_init(cloud_guest: CloudGuest) -> None:
    assert cloud_guest.check("hostname").strip() == HOSTNAME


def test_static_address_is_on_the_nic_with_the_spec_mac(cloud_guest: CloudGuest) -> None:
    lines = [
        line for line in cloud_guest.check("ip -o -4 addr show").splitlines() if f" {cloud_guest.address}/" in line
    ]
    assert len(lines) == 1, lines
    interface = lines[0].split()[1]
    assert f"inet {cloud_guest.net.guest_address(10)} " in lines[0]
    assert cloud_guest.check(f"cat /sys/class/net/{interface}/address").strip() == cloud_guest.mac


def test_default_route_goes_through_the_gateway(cloud_guest: CloudGuest) -> None:
    assert f"default via {cloud_guest.net.client.ip} " in cloud_guest.check("ip -4 route show default")


def test_resolv_conf_holds_both_nameservers(cloud_guest: CloudGuest) -> None:
    servers = [
        line.split()[1]
        for line in cloud_guest.check("cat /etc/resolv.conf").splitlines()
        if line.startswith("nameserver ")
    ]
    assert servers == list(NAMESERVERS)


def test_root_filesystem_grew_to_the_disk(cloud_guest: CloudGuest) -> None:
    size = int(cloud_guest.check("df -B1 --output=size /").split()[-1])
    assert size > cloud_guest.image_size
    assert size > 3.5 * 2**30, f"root is {size} bytes on a 4 GiB disk"


def test_the_user_has_passwordless_sudo(cloud_guest: CloudGuest) -> None:
    assert cloud_guest.check("sudo -n id -un").strip() == "root"


def test_only_the_generated_key_logs_in(cloud_guest: CloudGuest, tmp_path: Path) -> None:
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    refused = cloud_guest.ssh("true", key=other)
    assert refused.returncode == 255 and "Permission denied" in refused.stderr, refused.stderr
    assert cloud_guest.check("id -un").strip() == USER


def test_isolated_network_leaves_nothing_behind_even_after_a_failure() -> None:
    with pytest.raises(RuntimeError), isolated_network("10.213.8.1/24") as net:
        assert net.run(["ip", "-o", "addr", "show"]).stdout.count("10.213.8.1/24") == 1
        assert net.run(["ip", "route", "get", "1.1.1.1"]).returncode != 0  # nothing is routed out
        assert sorted(leftovers(net)) == sorted([net.bridge, net.namespace, net.bridge.replace("vmhtb", "vmhtv")])
        raise RuntimeError("the test failed")
    assert leftovers(net) == []
