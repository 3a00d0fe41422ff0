"""`vmhost serve` as a real process: TLS, and the refusal to serve plain HTTP beyond loopback."""

import os
import subprocess

import httpx

from tests.eventually import eventually
from tests.integration.conftest import REPO
from tests.integration.running_agent import free_port
from vmhost.host.tokens import read_token

VMHOST = str(REPO / ".venv" / "bin" / "vmhost")


def test_serves_https_with_the_given_certificate(config_file, data_dir, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    env = {**os.environ, "VMHOST_CONFIG": str(config_file)}
    agent = subprocess.Popen(
        [VMHOST, "serve", "--port", str(port), "--tls-cert", str(cert), "--tls-key", str(key)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"https://127.0.0.1:{port}"

        def healthy() -> httpx.Response:
            assert agent.poll() is None, "the agent exited"
            return httpx.get(f"{url}/healthz", verify=str(cert), timeout=1)

        health = eventually(healthy, 30, 0.1, "the agent's /healthz")
        assert health.json() == {"status": "ok"}
        token = read_token(data_dir)
        assert (
            httpx.get(f"{url}/v1/host", verify=str(cert), headers={"Authorization": f"Bearer {token}"}).status_code
            == 200
        )
        try:
            plain = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code
        except httpx.HTTPError:
            plain = None
        assert plain != 200
    finally:
        agent.terminate()
        agent.wait(30)
    assert oct(os.stat(data_dir / "api-token").st_mode & 0o777) == "0o600"


def test_refuses_plain_http_beyond_loopback_unless_insecure(config_file):
    env = {**os.environ, "VMHOST_CONFIG": str(config_file)}
    refused = subprocess.run(
        [VMHOST, "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert refused.returncode == 1
    assert "refusing to serve plain HTTP on 0.0.0.0" in refused.stderr
    half_tls = subprocess.run(
        [VMHOST, "serve", "--tls-cert", "/nonexistent.pem"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "TLS needs both --tls-cert and --tls-key" in half_tls.stderr
