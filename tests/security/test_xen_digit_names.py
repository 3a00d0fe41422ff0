"""Issue 12 item 5 / issue 21 item 1: xl reads an all-digit argument as a domain id (libxl_utils.c
libxl_domain_qualifier_to_domid), so a VM named `7` must never make xl act on domid 7, which may be another
guest. Checked against the stand-in `xl`, which reads digits as xl does; no Xen host is used."""

import subprocess
from pathlib import Path

import pytest

from tests.unit.xen_standin import StandIn
from vmhost.config import HostConfig
from vmhost.drivers.base import Resources
from vmhost.drivers.xen import XlDriver
from vmhost.engine import Engine
from vmhost.errors import NotFound
from vmhost.spec import SpecError, parse_spec


@pytest.fixture
def driver(standin: StandIn, tmp_path: Path) -> XlDriver:
    return XlDriver("xl", tmp_path / "data" / "xen", sysfs=tmp_path / "sys", xl_conf=tmp_path / "xl.conf")


@pytest.fixture
def engine(driver: XlDriver, tmp_path: Path) -> Engine:
    return Engine(HostConfig(data_dir=tmp_path / "data", stop_timeout=1.0), driver)  # type: ignore[arg-type]


def seven(uuid: str = "00000000-0000-4000-8000-000000000007") -> dict[str, object]:
    return {"name": "7", "uuid": uuid, "memory": "128MiB"}


def test_an_all_digit_name_is_refused_for_xen_at_validation_with_the_reason(engine: Engine, standin: StandIn) -> None:
    with pytest.raises(SpecError) as refused:
        engine.create(seven(), start=True)
    problems = {problem.path: problem.message for problem in refused.value.problems}
    assert "domain id" in problems["name"]
    assert standin.argvs() == []
    assert engine.store.get_vm("7") is None


def test_the_standin_reads_digits_as_a_domid_like_xl(standin: StandIn) -> None:
    """The victim at domid 7 goes, not the domain *named* 7: what xl itself would do."""
    standin.add_domain("victim", 7)
    standin.add_domain("7", 8)
    done = subprocess.run([standin.command, "destroy", "7"], capture_output=True, text=True, check=False)
    assert done.returncode == 0
    assert sorted(standin.domains()) == ["7"]


def test_a_vm_recorded_as_7_never_lets_xl_act_on_domid_7(driver: XlDriver, standin: StandIn, tmp_path: Path) -> None:
    """A VM named 7 from before the refusal (or adopted) is addressed by the domid xl lists for its name."""
    standin.add_domain("victim", 7)
    driver.define(parse_spec(seven()), Resources(console_log=tmp_path / "vms" / "7" / "console.log"))
    driver.destroy("7")
    with pytest.raises(NotFound):
        driver.pause("7")
    with pytest.raises(NotFound):
        driver.request_shutdown("7")
    assert "victim" in standin.domains()
    driver.create_paused("7")
    own = str(standin.domains()["7"]["domid"])
    driver.resume("7")
    driver.destroy("7")
    assert "victim" in standin.domains()
    assert "7" not in standin.domains()
    acted = [argv for argv in standin.argvs() if argv[0] in ("destroy", "pause", "unpause", "shutdown")]
    assert acted == [["unpause", own], ["destroy", own]]
