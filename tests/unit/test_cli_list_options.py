"""`vmhost list` as virsh and vmadm users type it: the long option forms, fields named in --help, parsable and
headerless output, sorting; in local mode on the fake hypervisor."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.fakes.driver import FakeHypervisor
from tests.fakes.engines import engine_on, spec
from vmhost.cli import main as cli
from vmhost.engine import Engine


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    engine = engine_on(FakeHypervisor(), tmp_path)
    engine.create(spec("web", memory="256MiB"), start=True)
    engine.create(spec("db", memory="512MiB"))
    monkeypatch.setattr(cli, "build_engine", lambda *_args, **_kwargs: engine)
    return engine


def vmhost(engine: Engine, *args: str):
    config = engine.config.data_dir / "config.toml"
    config.write_text(f'data_dir = "{engine.config.data_dir}"\n')
    return CliRunner().invoke(cli.app, list(args), env={"VMHOST_CONFIG": str(config), "VMHOST_AGENT": ""})


def test_list_help_names_every_field_it_can_show_and_filter_on(engine):
    result = vmhost(engine, "list", "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    for field in cli.FIELDS:
        assert field in text
    for option in ("--output", "--sort", "--no-header", "--parsable"):
        assert option in text


def test_the_long_forms_select_sort_and_drop_the_header(engine):
    result = vmhost(engine, "list", "--output", "name,state,memory", "--sort", "-memory", "--no-header")
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines() if line.strip()]
    assert rows == [["db", "stopped", "512MiB"], ["web", "running", "256MiB"]]


def test_parsable_output_is_colon_separated_without_a_header_and_filters_apply(engine):
    result = vmhost(engine, "list", "--parsable", "--output", "name,state", "state=running")
    assert (result.exit_code, result.stdout) == (0, "web:running\n")


def test_the_short_forms_are_the_same_options(engine):
    long = vmhost(engine, "list", "--output", "name", "--sort", "name", "--no-header").stdout
    short = vmhost(engine, "list", "-o", "name", "-s", "name", "-H").stdout
    assert long == short and long.split() == ["db", "web"]
