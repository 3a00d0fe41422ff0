"""The dashboard with 100 VMs: time from navigation to the VM list rendered, in headless Chromium (row 20).

Run as root from the repository root:  .venv/bin/python bench/dashboard.py [--quick]

It starts its own agent (as bench/run.py does), tops it up to 100 defined (stopped) tiny guests through the API,
signs in once, then loads `/ui/#/vms` again and again: each load goes through about:blank first, so it is a new
document that fetches the page, its bundle (revalidated by ETag) and `GET /v1/vms`, opens the event stream and
renders the table. The time is the page's own `performance.mark("vmhost:vm-list")`, set once the 100 rows are in
the DOM, measured from the navigation's start. Loads with the browser's HTTP cache emptied first (CDP
`Network.clearBrowserCache`: the 300 KB bundle fetched again) are reported on their own. Beside it, the same
`GET /v1/vms` from Python (httpx, keep-alive): the API's share.
"""

import argparse
import shutil
import signal
import sys
import time

from harness import (
    PREFIX,
    BenchError,
    Series,
    Session,
    create_agent_vms,
    fmt,
    make_workspace,
    percentile,
    progress,
    terminate,
    wait_until,
)
from migrate import render_table
from run import cleanup
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

VMS = 100
TARGET = 1.0
CHROMEDRIVER = "/usr/bin/chromedriver"
MARK = "vmhost:vm-list"
WAIT, POLL = 30.0, 0.02


def browser() -> WebDriver:
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1280,900")
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def sign_in(driver: WebDriver, url: str, token: str) -> None:
    driver.get(f"{url}/ui/")
    wait_until(lambda: driver.find_elements(By.ID, "token"), "the sign-in form", WAIT, POLL)
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#signin button[type=submit]").click()
    wait_until(lambda: driver.find_elements(By.ID, "vm-table"), "the list after sign-in", WAIT, POLL)


def load_list(driver: WebDriver, url: str, empty_cache: bool = False) -> float:
    """One load of the list as a new document; seconds from navigation start to the mark."""
    driver.get("about:blank")
    if empty_cache:
        driver.execute_cdp_cmd("Network.clearBrowserCache", {})
    driver.get(f"{url}/ui/#/vms")
    marked = lambda: driver.execute_script("return performance.getEntriesByName(arguments[0]).length", MARK)  # noqa: E731
    wait_until(marked, "the mark", WAIT, POLL)
    rows = driver.execute_script("return document.querySelectorAll('#vm-table tbody tr').length")
    if rows < VMS:
        raise BenchError(f"the list rendered {rows} rows, not {VMS}")
    return float(driver.execute_script("return performance.getEntriesByName(arguments[0])[0].startTime", MARK)) / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer loads: a smoke run")
    args = parser.parse_args()
    loads, emptied = (5, 2) if args.quick else (20, 5)
    if shutil.which("chromium") is None:
        print("error: chromium is not installed (scripts/setup.sh installs it)", file=sys.stderr)
        return 1
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, terminate)
    session = Session()
    warm, cold, api_times = Series(), Series(), Series()
    try:
        session.workspace = make_workspace()
        agent = session.start_agent()
        api = session.api
        assert api is not None
        progress(f"creating {VMS} VMs")
        create_agent_vms(api, session.made, [f"{PREFIX}ui-{i:03d}" for i in range(VMS)], "128MiB")
        progress(f"{loads} loads, then {emptied} with the cache emptied")
        driver = browser()
        try:
            sign_in(driver, agent.url, agent.token())
            load_list(driver, agent.url)  # warm-up
            for _ in range(loads):
                warm.values.append(load_list(driver, agent.url))
            for _ in range(emptied):
                cold.values.append(load_list(driver, agent.url, empty_cache=True))
        finally:
            driver.quit()
        for _ in range(loads):
            began = time.perf_counter()
            api.call("GET", "/v1/vms")
            api_times.values.append(time.perf_counter() - began)
    except KeyboardInterrupt:
        progress("interrupted")
        return 130
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        cleanup(session)
    p90 = percentile(warm.values, 90) if len(warm.values) > 1 else warm.median
    rows = [
        ["#", "measurement", "vmhost", "baseline", "result", "target", "verdict"],
        [
            "20",
            f"dashboard: navigation -> list of {VMS} rendered, median of {len(warm.values)}",
            fmt(warm.median),
            f"GET /v1/vms (httpx) {fmt(api_times.median)}",
            f"p90 {fmt(p90)}",
            f"< {fmt(TARGET)}",
            "ok" if warm.median < TARGET else "MISSED",
        ],
        [
            "20",
            f"  the same with the browser cache emptied first, median of {len(cold.values)}",
            fmt(cold.median),
            "-",
            "-",
            f"< {fmt(TARGET)}",
            "ok" if cold.median < TARGET else "MISSED",
        ],
    ]
    print("vmhost dashboard benchmark (headless Chromium, a local agent)")
    print(f"date: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}; {VMS} defined VMs")
    print()
    print(render_table(rows))
    print()
    print("raw numbers:")
    print(f"  loads (warm)      {warm.describe()}")
    print(f"  loads (emptied)   {cold.describe()}")
    print(f"  GET /v1/vms       {api_times.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
