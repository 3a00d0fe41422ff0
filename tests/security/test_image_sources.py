"""`image import URL` makes the agent send a GET wherever the URL (or a redirect) points: `allowed_image_hosts`
limits that, as `allowed_registries` limits pulls. Real HTTP servers on loopback; nothing is sent elsewhere."""

import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from vmhost.config import HostConfig
from vmhost.drivers.select import build_drivers
from vmhost.engine import Engine
from vmhost.errors import HostResourceError
from vmhost.spec import SpecError


class Server:
    """Serves one qcow2 at /disk.qcow2, or redirects every request to `redirect_to`; counts the requests."""

    def __init__(self, image: bytes, redirect_to: str | None = None):
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                if redirect_to:
                    self.send_response(302)
                    self.send_header("Location", redirect_to)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(image)))
                self.end_headers()
                self.wfile.write(image)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def qcow2(tmp_path: Path) -> bytes:
    path = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "16M"], check=True)
    return path.read_bytes()


@pytest.fixture
def servers(qcow2: bytes) -> Iterator[tuple[Server, Server]]:
    """An image server, and a second one that redirects to it."""
    target = Server(qcow2)
    redirector = Server(qcow2, redirect_to=f"http://{target.host}/disk.qcow2")
    yield target, redirector
    target.close()
    redirector.close()


def engine_allowing(config: HostConfig, hosts: tuple[str, ...] | None) -> Engine:
    limited = replace(config, allowed_image_hosts=hosts)
    return Engine(limited, build_drivers(limited))


def _store_is_empty(engine: Engine) -> bool:
    store = engine.config.image_store_dir
    return not engine.list_images() and (not store.exists() or not [p for p in store.iterdir() if p.is_file()])


def test_a_url_to_a_host_not_allowed_is_refused_before_any_request(config, servers, libvirt_conn):
    target, _ = servers
    engine = engine_allowing(config, ("images.example:443",))
    try:
        with pytest.raises(SpecError, match=f"source: {target.host} is not in allowed_image_hosts"):
            engine.import_image(f"http://{target.host}/disk.qcow2", "far")
        assert target.requests == 0
        assert _store_is_empty(engine)
    finally:
        engine.store.close()


def test_a_redirect_to_a_host_not_allowed_is_not_followed(config, servers, libvirt_conn):
    target, redirector = servers
    engine = engine_allowing(config, (redirector.host,))
    try:
        with pytest.raises(HostResourceError, match=f"leads to {target.host}, which is not in allowed_image_hosts"):
            engine.import_image(f"http://{redirector.host}/disk.qcow2", "bounced")
        assert (redirector.requests, target.requests) == (1, 0)
        assert _store_is_empty(engine)
    finally:
        engine.store.close()


def test_allowed_hosts_by_name_or_with_port_are_fetched(config, servers, libvirt_conn):
    target, redirector = servers
    engine = engine_allowing(config, (redirector.host, "127.0.0.1"))
    try:
        image = engine.import_image(f"http://{redirector.host}/disk.qcow2", "allowed")
        assert (image.name, image.format, target.requests) == ("allowed", "qcow2", 1)
    finally:
        engine.delete_image("allowed")
        engine.store.close()
