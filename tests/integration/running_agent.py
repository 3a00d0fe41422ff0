"""A real agent (uvicorn serving the same app `vmhost serve` builds) in a thread of the test process."""

import socket
import threading
import time

import uvicorn

from vmhost.api.app import create_app
from vmhost.api.auth import read_token
from vmhost.api.server import ROUTERS, build_agent
from vmhost.config import HostConfig


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RunningAgent:
    def __init__(self, config: HostConfig):
        self.agent = build_agent(config)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = str(read_token(config.data_dir))
        self.server = uvicorn.Server(
            uvicorn.Config(create_app(self.agent, ROUTERS), port=self.port, log_config=None, access_log=False)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "RunningAgent":
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "agent did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
