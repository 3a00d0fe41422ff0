"""A real agent (uvicorn serving the app `vmhost serve` builds, configured as `vmhost serve` configures it) in a
thread of the test process."""

import contextlib
import socket
import threading

import httpx

from tests.eventually import eventually
from vmhost.api.app import create_app
from vmhost.api.server import AgentServer, Listen, build_agent, plugin_listeners, uvicorn_config
from vmhost.config import HostConfig
from vmhost.host.tokens import read_token
from vmhost.plugins import Plugins


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RunningAgent:
    """With the installed plugins unless given others; their listeners run too."""

    def __init__(self, config: HostConfig, plugins: Plugins | None = None):
        self.plugins = plugins if plugins is not None else Plugins.discover(config)
        self.agent = build_agent(config, self.plugins)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = str(read_token(config.data_dir))
        app = create_app(self.agent, self.plugins)
        self.server = AgentServer(
            uvicorn_config(app, Listen("127.0.0.1", self.port), self.port, config), app.state.stopping
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self._listeners = contextlib.ExitStack()

    def __enter__(self) -> "RunningAgent":
        self.listeners = self._listeners.enter_context(
            plugin_listeners(self.agent, self.plugins, Listen("127.0.0.1", self.port))
        )
        self.thread.start()
        eventually(
            lambda: self.server.started and all(server.started for server in self.listeners), 10, 0.05, "agent start"
        )
        return self

    def http(self, timeout: float = 120) -> httpx.Client:
        """A client that sends the agent's token."""
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=timeout)

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self._listeners.close()
        if not self.thread.is_alive():  # its shutdown (lifespan: reconcile thread, operations) still uses the store
            self.agent.engine.store.close()
