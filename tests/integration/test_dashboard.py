"""The dashboard in a real browser (Debian's headless Chromium through chromedriver) against a real agent and real
VMs: sign-in, the live VM list, start and the console, the spec editor, a read-only session, sign-out. Each page
is saved as a screenshot in ARTIFACTS."""

import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.eventually import eventually
from tests.fleet.etcd_server import EtcdServer
from tests.integration.running_agent import RunningAgent
from vmhost.api.server import SHUTDOWN_GRACE
from vmhost.config import FleetConfig, HostConfig
from vmhost.engine import Engine

pytestmark = pytest.mark.integration

CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("VMHOST_TEST_ARTIFACTS", "/tmp/vmhost-test-artifacts")) / "dashboard"
MARKER = "VMHOST-GUEST-READY"


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    if not CHROMEDRIVER.exists():
        pytest.fail("chromedriver is missing: scripts/setup.sh installs chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(browser: WebDriver, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def sign_in(browser: WebDriver, agent: RunningAgent, token: str | None = None) -> None:
    browser.get(f"{agent.url}/ui/")
    field = eventually(lambda: browser.find_element(By.ID, "token"), 10, 0.1, "the sign-in form")
    field.send_keys(token or agent.token)
    browser.find_element(By.CSS_SELECTOR, "#signin button[type=submit]").click()
    eventually(lambda: browser.find_element(By.ID, "vm-table"), 10, 0.1, "the VM list after sign-in")


def row_state(browser: WebDriver, vm: str) -> str:
    cells = browser.find_elements(By.CSS_SELECTOR, f'tr[data-vm="{vm}"] td.state')
    return cells[0].text if cells else ""


def fetch(browser: WebDriver, method: str, path: str, csrf: bool = True) -> Any:
    """A request from the page itself (its cookie), with or without the session's CSRF token."""
    return browser.execute_async_script(
        """
        const [method, path, withCsrf, done] = arguments;
        const session = await (await fetch("/ui/session")).json().catch(() => ({}));
        const headers = {"Content-Type": "application/json"};
        if (withCsrf && session.csrf) headers["X-CSRF-Token"] = session.csrf;
        const response = await fetch(path, {method, headers, body: method === "GET" ? undefined : "{}"});
        done({status: response.status, body: await response.text()});
        """,
        method,
        path,
        csrf,
    )


def test_signed_in_the_list_shows_the_vm_and_its_state_changes_live_when_the_cli_stops_it_through_the_agent(
    agent: RunningAgent,
    engine: Engine,
    guest_spec: Callable[..., dict[str, Any]],
    vm_name: Callable[[str], str],
    cli: Callable[..., subprocess.CompletedProcess[str]],
    browser: WebDriver,
) -> None:
    name = vm_name("ui-list")
    engine.create(guest_spec(name), start=True)
    sign_in(browser, agent)
    eventually(lambda: row_state(browser, name) == "running", 10, 0.05, "the VM running in the list")
    uptime = f'tr[data-vm="{name}"] td.uptime_seconds'
    eventually(lambda: browser.find_element(By.CSS_SELECTOR, uptime).text.endswith("s"), 10, 0.1, "its uptime")
    screenshot(browser, "vm-list")
    stopped = cli("--agent", agent.url, "--token", agent.token, "stop", name, "-F")
    assert stopped.returncode == 0, stopped.stderr
    returned = time.monotonic()
    eventually(lambda: row_state(browser, name) == "stopped", 5, 0.02, "the list showing the stop")
    assert time.monotonic() - returned <= 1.0, "the state change took more than a second to show"
    browser.find_element(By.ID, "filter").send_keys("no-such-vm")
    eventually(lambda: not browser.find_elements(By.CSS_SELECTOR, f'tr[data-vm="{name}"]'), 5, 0.05, "filtered out")


def test_start_from_the_page_boots_the_guest_and_the_browser_console_shows_its_marker(
    agent: RunningAgent,
    engine: Engine,
    guest_spec: Callable[..., dict[str, Any]],
    vm_name: Callable[[str], str],
    browser: WebDriver,
) -> None:
    name = vm_name("ui-start")
    engine.create(guest_spec(name), start=False)
    sign_in(browser, agent)
    browser.get(f"{agent.url}/ui/#/vm/{name}")
    start = eventually(lambda: browser.find_element(By.CSS_SELECTOR, "[data-action=start]"), 10, 0.1, "Start")
    start.click()
    eventually(lambda: browser.find_element(By.ID, "vm-state").text == "running", 60, 0.1, "the VM running")
    assert engine.get(name)["state"] == "running"
    browser.find_element(By.ID, "open-console").click()
    eventually(lambda: MARKER in browser.find_element(By.CSS_SELECTOR, ".xterm-rows").text, 120, 0.3, "the marker")
    screenshot(browser, "vm-console")


def test_a_bad_spec_in_the_editor_shows_each_problem_at_its_path_and_creates_nothing(
    agent: RunningAgent, engine: Engine, vm_name: Callable[[str], str], browser: WebDriver
) -> None:
    name = vm_name("ui-bad")
    sign_in(browser, agent)
    browser.get(f"{agent.url}/ui/#/create")
    editor = eventually(lambda: browser.find_element(By.ID, "spec-editor"), 10, 0.1, "the editor")
    memory = eventually(lambda: browser.find_element(By.CSS_SELECTOR, "[data-field=memory]"), 10, 0.1, "fields")
    assert browser.find_element(By.CSS_SELECTOR, "[data-field=nics]")
    browser.execute_script("arguments[0].value = ''", editor)
    memory.click()
    assert editor.get_attribute("value") == "memory: "
    browser.execute_script(
        "arguments[0].value = arguments[1]", editor, f"name: {name}\nmemory: lots\ncpu:\n  vcpus: 0\n"
    )
    browser.find_element(By.ID, "create").click()
    problems = eventually(
        lambda: browser.find_elements(By.CSS_SELECTOR, "#spec-result .problems li"), 10, 0.1, "problems"
    )
    paths = {item.find_element(By.TAG_NAME, "code").text for item in problems}
    assert {"memory.size", "cpu.vcpus"} <= paths, paths
    screenshot(browser, "create-invalid")
    assert name not in [record.name for record in engine.store.list_vms()]


def test_a_read_only_session_shows_no_actions_and_a_forged_action_is_refused(
    agent: RunningAgent,
    engine: Engine,
    guest_spec: Callable[..., dict[str, Any]],
    vm_name: Callable[[str], str],
    cli: Callable[..., subprocess.CompletedProcess[str]],
    browser: WebDriver,
) -> None:
    name = vm_name("ui-ro")
    engine.create(guest_spec(name), start=True)
    made = cli("token", "create", "--read-only", "--name", "ui-viewer")
    assert made.returncode == 0, made.stderr
    token = next(word for word in made.stdout.split() if len(word) >= 32)
    sign_in(browser, agent, token)
    assert "read-only" in browser.find_element(By.ID, "who").text
    browser.get(f"{agent.url}/ui/#/vm/{name}")
    eventually(lambda: browser.find_element(By.ID, "vm-state").text == "running", 10, 0.1, "the VM page")
    assert not browser.find_elements(By.ID, "vm-actions")
    assert not browser.find_elements(By.ID, "snapshot")
    screenshot(browser, "vm-read-only")
    forged = fetch(browser, "POST", f"/v1/vms/{name}/stop")
    assert forged["status"] == 403 and "read-only" in forged["body"], forged
    assert engine.get(name)["state"] == "running"


def test_an_action_without_the_csrf_token_is_refused_even_for_an_admin_session(
    agent: RunningAgent,
    engine: Engine,
    guest_spec: Callable[..., dict[str, Any]],
    vm_name: Callable[[str], str],
    browser: WebDriver,
) -> None:
    name = vm_name("ui-csrf")
    engine.create(guest_spec(name), start=True)
    sign_in(browser, agent)
    forged = fetch(browser, "POST", f"/v1/vms/{name}/kill", csrf=False)
    assert forged["status"] == 403 and "X-CSRF-Token" in forged["body"], forged
    assert engine.get(name)["state"] == "running"


def test_sign_out_ends_the_session_and_its_cookie_opens_nothing_any_more(
    agent: RunningAgent, browser: WebDriver
) -> None:
    sign_in(browser, agent)
    cookie = browser.get_cookie("vmhost_session")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert fetch(browser, "GET", "/v1/vms")["status"] == 200
    browser.find_element(By.ID, "sign-out").click()
    eventually(lambda: browser.find_element(By.ID, "token"), 10, 0.1, "the sign-in form again")
    assert fetch(browser, "GET", "/v1/vms")["status"] == 401
    with agent.http() as client:
        client.headers.pop("Authorization")
        replayed = client.get("/v1/vms", headers={"Cookie": f"vmhost_session={cookie['value']}"})
    assert replayed.status_code == 401, replayed.text


def test_the_host_page_shows_capacity_and_each_drivers_capabilities(agent: RunningAgent, browser: WebDriver) -> None:
    sign_in(browser, agent)
    browser.get(f"{agent.url}/ui/#/host")
    facts = eventually(lambda: browser.find_element(By.ID, "host-facts").text, 10, 0.1, "the host's facts")
    assert "CPUs" in facts and "free of" in facts
    matrix = eventually(lambda: browser.find_element(By.ID, "capabilities").text, 10, 0.1, "the capability matrix")
    assert "libvirt" in matrix and "live-migration" in matrix, matrix
    screenshot(browser, "host")


def test_reloading_the_list_again_and_again_never_waits_for_a_connection(
    agent: RunningAgent, browser: WebDriver
) -> None:
    """Each page's event stream is given back when it is left: a browser has 6 connections per host."""
    sign_in(browser, agent)
    for _ in range(8):
        browser.get("about:blank")
        began = time.monotonic()
        browser.get(f"{agent.url}/ui/#/vms")
        eventually(lambda: browser.find_elements(By.ID, "vm-count"), 5, 0.02, "the list")
        eventually(lambda: "shown" in browser.find_element(By.ID, "vm-count").text, 5, 0.02, "the list filled")
        assert time.monotonic() - began < 5


def test_the_vm_page_charts_the_last_minutes_from_the_agents_own_samples(
    agent: RunningAgent,
    engine: Engine,
    guest_spec: Callable[..., dict[str, Any]],
    vm_name: Callable[[str], str],
    browser: WebDriver,
) -> None:
    name = vm_name("ui-charts")
    engine.create(guest_spec(name), start=True)
    with agent.http() as client:
        samples = eventually(lambda: len(client.get(f"/v1/vms/{name}/stats").json()["samples"]) >= 2, 20, 0.5)
        assert samples
        first = client.get(f"/v1/vms/{name}/stats").json()["samples"][0]
        assert first["cpu_seconds"] > 0 and first["rss_bytes"] > 0, first
    sign_in(browser, agent)
    browser.get(f"{agent.url}/ui/#/vm/{name}")
    charts = eventually(lambda: browser.find_elements(By.CSS_SELECTOR, "#charts figure canvas"), 15, 0.2, "charts")
    assert len(charts) == 4
    screenshot(browser, "vm-charts")
    engine.stop(name, force=True)
    with agent.http() as client:
        eventually(lambda: client.get(f"/v1/vms/{name}/stats").json()["samples"] == [], 15, 0.5, "no samples")


def test_the_graphical_console_connects_to_a_password_protected_display_the_page_never_learns_the_password_of(
    agent: RunningAgent,
    engine: Engine,
    guest_spec: Callable[..., dict[str, Any]],
    vm_name: Callable[[str], str],
    browser: WebDriver,
) -> None:
    name = vm_name("ui-vnc")
    engine.create(guest_spec(name, graphics={"type": "vnc", "password": "Vnc-pw2"}), start=True)
    sign_in(browser, agent)
    browser.get(f"{agent.url}/ui/#/vm/{name}")
    eventually(lambda: browser.find_element(By.ID, "open-vnc").is_displayed(), 10, 0.1, "the VNC button")
    browser.find_element(By.ID, "open-vnc").click()
    status = lambda: browser.find_element(By.ID, "vnc-status").get_attribute("data-state")  # noqa: E731
    eventually(lambda: status() == "connected", 20, 0.1, "noVNC connected")
    assert browser.find_elements(By.CSS_SELECTOR, "#vnc-screen canvas")
    screenshot(browser, "vm-vnc")
    assert "Vnc-pw2" not in browser.page_source
    seen = fetch(browser, "GET", f"/v1/vms/{name}")
    assert "Vnc-pw2" not in seen["body"] and "********" in seen["body"]


def test_the_fleet_page_shows_hosts_and_vms_and_cordons_and_uncordons_a_host(
    config: HostConfig,
    engine: Engine,
    guest_spec: Callable[..., dict[str, Any]],
    vm_name: Callable[[str], str],
    tmp_path: Path,
    browser: WebDriver,
) -> None:
    etcd = EtcdServer(tmp_path / "etcd")
    etcd.start()
    host = f"ui{secrets.token_hex(3)}"
    fleet = FleetConfig(etcd_endpoints=(etcd.endpoint,), host_name=host, prefix=f"/t{secrets.token_hex(4)}")
    try:
        with RunningAgent(replace(config, fleet=fleet, agent_url="http://127.0.0.1:1")) as agent:
            with agent.http() as client:
                spec = guest_spec(vm_name("ui-fleet"))
                assert client.post("/v1/fleet/vms", json={"spec": spec, "state": "stopped"}).status_code == 201
            sign_in(browser, agent)
            eventually(lambda: browser.find_element(By.ID, "nav-fleet").is_displayed(), 10, 0.1, "the Fleet link")
            browser.get(f"{agent.url}/ui/#/fleet")
            row = f'#fleet-hosts tr[data-host="{host}"]'
            eventually(lambda: "yes" in browser.find_element(By.CSS_SELECTOR, row).text, 15, 0.2, "the host alive")
            eventually(lambda: spec["name"] in browser.find_element(By.ID, "fleet-vms").text, 15, 0.2, "the VM")
            screenshot(browser, "fleet")
            browser.find_element(By.CSS_SELECTOR, f"{row} button").click()  # Drain: nowhere to go, so only cordoned
            browser.switch_to.alert.accept()
            uncordon = f"{row} button[data-action=uncordon]"
            eventually(lambda: browser.find_elements(By.CSS_SELECTOR, uncordon), 30, 0.2, "Uncordon offered")
            browser.find_element(By.CSS_SELECTOR, uncordon).click()
            eventually(lambda: browser.find_elements(By.CSS_SELECTOR, f"{row} button[data-action=drain]"), 15, 0.2)
            with agent.http() as client:
                assert client.delete(f"/v1/fleet/vms/{spec['name']}").status_code == 200
                eventually(lambda: client.get(f"/v1/vms/{spec['name']}").status_code == 404, 30, 0.2, "VM gone")
            browser.get("about:blank")  # the page's event stream ends before the agent does
    finally:
        etcd.stop()


def test_an_open_event_stream_ends_when_the_agent_stops_and_says_where_to_resume(
    config: HostConfig, engine: Engine
) -> None:
    running = RunningAgent(config).__enter__()
    with running.http() as client, client.stream("GET", "/v1/events", params={"follow": "true"}) as stream:
        assert stream.status_code == 200
        began = time.monotonic()
        running.__exit__(None, None, None)
        assert not running.thread.is_alive()
        assert time.monotonic() - began < SHUTDOWN_GRACE, "ended at once, not cancelled after the grace"
        assert list(stream.iter_lines())[-2].startswith(": the agent is stopping; reconnect with since=")


def test_on_a_tablet_sized_screen_the_list_fits_without_scrolling_sideways(
    agent: RunningAgent,
    engine: Engine,
    guest_spec: Callable[..., dict[str, Any]],
    vm_name: Callable[[str], str],
    browser: WebDriver,
) -> None:
    engine.create(guest_spec(vm_name("ui-tablet")), start=False)
    browser.set_window_size(768, 1024)
    sign_in(browser, agent)
    eventually(lambda: browser.find_elements(By.CSS_SELECTOR, "#vm-table tbody tr"), 10, 0.1, "the list")
    overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than the screen"
    screenshot(browser, "vm-list-tablet")
