"""A real etcd (Debian's etcd-server) on loopback for the fleet tests: started, killed and started again on its
data directory as a crash and a restart would."""

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import httpx

from tests.eventually import eventually

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class EtcdServer:
    def __init__(self, directory: Path):
        self.directory = directory
        self.client_port, self.peer_port = free_port(), free_port()
        self.endpoint = f"http://127.0.0.1:{self.client_port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        peer = f"http://127.0.0.1:{self.peer_port}"
        self.directory.mkdir(parents=True, exist_ok=True)
        log = (self.directory / "etcd.log").open("ab")
        self.process = subprocess.Popen(
            [
                ETCD,
                "--name",
                "test",
                "--data-dir",
                str(self.directory / "data"),
                "--listen-client-urls",
                self.endpoint,
                "--advertise-client-urls",
                self.endpoint,
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
                "--initial-cluster",
                f"test={peer}",
                "--auto-compaction-retention",
                "0",
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        eventually(self.healthy, 20, 0.1, f"etcd at {self.endpoint} healthy")

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.endpoint}/health", timeout=1).json().get("health") == "true"
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL, as a crash: the data directory stays."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)
