"""Container images from a registry: a real registry (Debian's docker-registry) on loopback, an image the test
builds from busybox-static with umoci and pushes with skopeo, pulled by vmhost and run on the real runc."""

import hashlib
import json
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from tests.conformance.runc_harness import wait_for_log
from tests.integration.conftest import allowed_test_roots
from vmhost.client import AgentClient
from vmhost.config import HostConfig
from vmhost.drivers.select import build_drivers
from vmhost.engine import Engine
from vmhost.errors import Conflict, HostResourceError
from vmhost.spec import SpecError

pytestmark = pytest.mark.integration
REPO = Path(__file__).parents[2]
PREFIX = f"vmhost-reg-{secrets.token_hex(3)}-"
TAG = "1.36"
EXAMPLE_IMAGE = Path("/var/lib/vmhost/images/busybox-oci")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`127.0.0.1:PORT`: a plain-HTTP registry on loopback (scripts/registry.sh), its storage in a temporary
    directory."""
    root = tmp_path_factory.mktemp("registry")
    script = str(REPO / "scripts" / "registry.sh")
    started = subprocess.run([script, "up", str(root), str(_free_port())], capture_output=True, text=True, check=False)
    assert started.returncode == 0, started.stderr
    try:
        address = started.stdout.strip()
        assert httpx.get(f"http://{address}/v2/").status_code == 200
        yield address
    finally:
        subprocess.run([script, "down", str(root)], check=True)


@pytest.fixture(scope="module")
def pushed(registry: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The busybox image built with umoci (the setup's own script) and pushed: the digest of the manifest the
    registry serves."""
    layout = tmp_path_factory.mktemp("build") / "busybox"
    subprocess.run([str(REPO / "scripts" / "busybox-image.sh"), str(layout), TAG], check=True, capture_output=True)
    target = f"docker://{registry}/library/busybox:{TAG}"
    subprocess.run(
        ["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:{TAG}", target], check=True, capture_output=True
    )
    served = httpx.get(
        f"http://{registry}/v2/library/busybox/manifests/{TAG}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    digest = f"sha256:{hashlib.sha256(served.content).hexdigest()}"  # hashed here, not taken from skopeo
    assert digest == json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
    return digest


def _engine(data_dir: Path, **settings: object) -> Engine:
    config = HostConfig(data_dir=data_dir, stop_timeout=10, allowed_paths=allowed_test_roots(data_dir))
    config = replace(config, **settings)  # type: ignore[arg-type]
    return Engine(config, build_drivers(config))


@pytest.fixture
def engine(data_dir: Path) -> Iterator[Engine]:
    engine = _engine(data_dir)
    yield engine
    for record in engine.store.list_vms():
        engine.delete(record.name)
    engine.store.close()


def _store_entries(engine: Engine) -> list[str]:
    store = engine.config.image_store_dir
    return sorted(path.name for path in store.iterdir()) if store.is_dir() else []


def test_pull_records_the_digest_and_a_container_runs_from_it(engine, registry, pushed):
    lines: list[str] = []
    record = engine.pull_image(f"{registry}/library/busybox:{TAG}", "bb", progress=lines.append)
    assert (record.kind, record.format, f"sha256:{record.sha256}") == ("oci", "oci-layout", pushed)
    assert record.source == f"{registry}/library/busybox:{TAG}@{pushed}"
    assert any(line.startswith("Copying blob sha256:") for line in lines), lines
    assert Path(record.path).parent == engine.config.image_store_dir and Path(record.path, "index.json").is_file()
    assert Path(record.path).stat().st_mode & 0o777 == 0o700  # root only, as an unpacked rootfs is
    name = PREFIX + "run"
    engine.create(
        {
            "name": name,
            "kind": "container",
            "memory": "48MiB",
            "container": {
                "image": "bb",
                "command": ["sh", "-c", "echo from the registry in $(pwd) with $PATH; echo DONE"],
            },
        },
        start=True,
    )
    log = wait_for_log(engine, name, "DONE")
    assert "from the registry in /tmp with /bin" in log  # the image's WorkingDir and Env
    rootfs = engine.get(name)["container"]["rootfs"]
    assert (rootfs["type"], rootfs["image"], rootfs["digest"]) == ("image", "bb", pushed)


def test_an_image_in_use_by_a_container_is_kept_and_deleted_after(engine, registry, pushed):
    record = engine.pull_image(f"{registry}/library/busybox:{TAG}", "used")
    name = PREFIX + "user"
    engine.create({"name": name, "kind": "container", "memory": "32MiB", "container": {"image": "used"}})
    with pytest.raises(Conflict, match=f"in use by {name}"):
        engine.delete_image("used")
    assert Path(record.path).is_dir()
    engine.delete(name)
    engine.delete_image("used")
    assert engine.store.find_image("used") is None and not Path(record.path).exists()


def test_a_pinned_digest_is_pulled_and_a_wrong_pin_is_refused_leaving_nothing(engine, registry, pushed):
    record = engine.pull_image(f"{registry}/library/busybox:{TAG}@{pushed}", "pinned")  # the tag is only a label
    assert f"sha256:{record.sha256}" == pushed
    assert engine.pull_image(f"{registry}/library/busybox@{pushed}", "by-digest").sha256 == record.sha256
    before = _store_entries(engine)
    wrong = "sha256:" + "0" * 64
    with pytest.raises(HostResourceError, match="no such image, tag or digest"):
        engine.pull_image(f"{registry}/library/busybox@{wrong}", "wrong")
    assert engine.store.find_image("wrong") is None
    assert _store_entries(engine) == before


def test_a_docker_format_image_is_stored_as_oci_and_keeps_the_registrys_digest(engine, registry, pushed):
    """Registries often serve Docker v2 schema 2 manifests: skopeo converts them to OCI in the layout; the store
    still records the digest the registry serves (what a pin names), and the container runs."""
    target = f"docker://{registry}/library/busybox:docker"
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--dest-tls-verify=false",
            "--format",
            "v2s2",
            f"docker://{registry}/library/busybox:{TAG}",
            target,
            "--src-tls-verify=false",
        ],
        check=True,
        capture_output=True,
    )
    served = httpx.get(
        f"http://{registry}/v2/library/busybox/manifests/docker",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    assert served.json()["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    record = engine.pull_image(f"{registry}/library/busybox:docker", "docker-format")
    assert record.sha256 == hashlib.sha256(served.content).hexdigest() != pushed.removeprefix("sha256:")
    name = PREFIX + "docker"
    container = {"image": "docker-format", "command": ["sh", "-c", "echo converted; echo DONE"]}
    engine.create({"name": name, "kind": "container", "memory": "32MiB", "container": container}, start=True)
    assert "converted" in wait_for_log(engine, name, "DONE")


def test_an_update_switches_a_container_to_another_pulled_image(engine, registry, pushed):
    engine.pull_image(f"{registry}/library/busybox:{TAG}", "first")
    second = engine.pull_image(f"{registry}/library/busybox@{pushed}", "second")
    name = PREFIX + "switch"
    container = {"image": "first", "command": ["sh", "-c", "echo DONE"]}
    engine.create({"name": name, "kind": "container", "memory": "32MiB", "container": container})
    engine.update(name, {"container": {"image": "second"}})
    rootfs = engine.get(name)["container"]["rootfs"]
    assert (rootfs["image"], rootfs["layout"]) == ("second", second.path)
    engine.start(name)
    wait_for_log(engine, name, "DONE")


def test_an_unreachable_registry_is_a_clear_error(engine):
    with pytest.raises(HostResourceError, match=r"cannot pull 127\.0\.0\.1:\d+/library/busybox:1\.36: .*unreachable"):
        engine.pull_image(f"127.0.0.1:{_free_port()}/library/busybox:1.36", "nowhere")
    assert engine.store.find_image("nowhere") is None
    assert _store_entries(engine) == []


def test_a_registry_by_name_needs_tls_unless_configured_insecure(data_dir, registry, pushed):
    """localhost is a name (DNS or /etc/hosts could point it anywhere): TLS is required, as for any registry that
    is not a literal loopback address, until insecure_registries lists it."""
    by_name = f"localhost:{registry.rsplit(':', 1)[1]}"
    strict = _engine(data_dir)
    with pytest.raises(HostResourceError, match=r"the registry has no TLS.*insecure_registries"):
        strict.pull_image(f"{by_name}/library/busybox:{TAG}", "strict")
    assert strict.store.find_image("strict") is None and _store_entries(strict) == []
    strict.store.close()
    trusting = _engine(data_dir, insecure_registries=(by_name,))
    assert f"sha256:{trusting.pull_image(f'{by_name}/library/busybox:{TAG}', 'trusted').sha256}" == pushed
    trusting.store.close()


def test_a_registry_outside_allowed_registries_is_not_contacted(data_dir, registry, pushed):
    fenced = _engine(data_dir, allowed_registries=("registry.example",))
    with pytest.raises(SpecError, match=rf"reference: registry {registry} is not in allowed_registries"):
        fenced.pull_image(f"{registry}/library/busybox:{TAG}", "fenced")
    assert fenced.store.find_image("fenced") is None and _store_entries(fenced) == []
    fenced.store.close()
    opened = _engine(data_dir, allowed_registries=(registry,))
    assert f"sha256:{opened.pull_image(f'{registry}/library/busybox:{TAG}', 'opened').sha256}" == pushed
    opened.store.close()


def test_an_image_above_the_size_bound_is_aborted_leaving_nothing(data_dir, registry, pushed):
    small = _engine(data_dir, image_pull_max_bytes=64 * 1024)
    with pytest.raises(HostResourceError, match="larger than image_pull_max_bytes"):
        small.pull_image(f"{registry}/library/busybox:{TAG}", "big")
    assert small.store.find_image("big") is None and _store_entries(small) == []
    small.store.close()


def test_a_registry_that_never_answers_is_given_up_at_the_deadline_leaving_nothing(data_dir):
    with socket.socket() as silent:  # connections are queued by the kernel and never answered
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        hasty = _engine(data_dir, image_pull_timeout=1.0)
        started = time.monotonic()
        with pytest.raises(HostResourceError, match=r"did not answer within 1s"):
            hasty.pull_image(f"127.0.0.1:{silent.getsockname()[1]}/library/busybox:{TAG}", "late")
        assert time.monotonic() - started < 10
    assert hasty.store.find_image("late") is None and _store_entries(hasty) == []
    hasty.store.close()


def test_bad_input_is_refused_before_anything_is_fetched(engine, registry, pushed):
    with pytest.raises(SpecError, match="reference: 'Not A Reference' is not an image reference"):
        engine.pull_image("Not A Reference")
    engine.pull_image(f"{registry}/library/busybox:{TAG}", "taken")
    with pytest.raises(Exception, match=r"an image named taken already exists"):
        engine.pull_image(f"{registry}/library/busybox:{TAG}", "taken")
    with pytest.raises(SpecError, match=r"container\.rootfs\.image: no image missing in the image store"):
        engine.create(
            {"name": PREFIX + "missing", "kind": "container", "memory": "32MiB", "container": {"image": "missing"}}
        )
    assert engine.store.get_vm(PREFIX + "missing") is None


def test_cli_pull_shows_progress_and_the_image(cli, registry, pushed):
    result = cli("image", "pull", f"{registry}/library/busybox:{TAG}", "--name", "cli-bb", "--json")
    assert result.returncode == 0, result.stderr
    assert "Copying blob sha256:" in result.stderr
    assert json.loads(result.stdout)["sha256"] == pushed.removeprefix("sha256:")
    refused = cli("image", "pull", "UPPER/case")
    assert refused.returncode == 2 and "reference" in refused.stderr


def test_cli_pull_through_an_agent_relays_its_progress(agent, registry, pushed):
    lines: list[str] = []
    image = AgentClient(agent.url, agent.token).pull_image(f"{registry}/library/busybox:{TAG}", "remote", lines.append)
    assert image["name"] == "remote" and image["sha256"] == pushed.removeprefix("sha256:")
    assert lines[-1] == f"pulled {image['source']} as remote"  # the operation's progress, as it moved


def test_api_pull_is_an_operation(http, registry, pushed):
    response = http.post("/v1/images/pull?wait=true", json={"reference": f"{registry}/library/busybox:{TAG}"})
    assert response.status_code == 200, response.text
    assert response.json()["result"]["name"] == "busybox"
    assert response.json()["result"]["sha256"] == pushed.removeprefix("sha256:")
    assert http.get("/v1/images/busybox").json()["kind"] == "oci"
    missing = http.post("/v1/images/pull?wait=true", json={"reference": f"127.0.0.1:{_free_port()}/x/y:1"})
    assert missing.status_code >= 400 and "unreachable" in missing.json()["message"]


def test_the_container_example_runs_with_what_setup_prepared(data_dir):
    """examples/04-container.json names the layout scripts/setup.sh builds: no manual step."""
    document = json.loads((REPO / "examples" / "04-container.json").read_text())
    assert document["container"]["rootfs"]["path"] == str(EXAMPLE_IMAGE)
    document["name"] = PREFIX + "example"
    example = _engine(data_dir, allowed_paths=(*allowed_test_roots(data_dir), EXAMPLE_IMAGE))
    try:
        example.create(document, start=True)
        assert "hello from hello" in wait_for_log(example, document["name"], "hello from")
    finally:
        example.delete(document["name"])
        example.store.close()
