"""README's quick start, run as written: its files are written, its console blocks run in bash, and the output
they show must appear (`…` stands for anything; runs of spaces match any spacing). Only the host-specific parts
change: the data directory and the agent's address are the test's own."""

import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.conftest import GUEST_DIR, REPO, write_config_file
from tests.integration.running_agent import RunningAgent
from vmhost.config import HostConfig

README = REPO / "README.md"
DEFAULT_DATA_DIR = "/var/lib/vmhost"
DEFAULT_AGENT = "http://127.0.0.1:7070"


@dataclass
class ConsoleBlock:
    commands: list[str] = field(default_factory=list)
    expected: list[list[str]] = field(default_factory=list)
    """Per command, the output lines the README shows for it."""


def quick_start() -> str:
    text = README.read_text()
    start = text.index("## Quick start\n")
    return text[start : text.index("\n## ", start + 1)]


def files(section: str) -> dict[str, str]:
    """```yaml blocks announced by a line naming the file (A spec, `hello.yaml`:)."""
    found = {}
    for match in re.finditer(r"`([\w.-]+\.ya?ml)`:\n\n```ya?ml\n(.*?)```", section, re.S):
        found[match.group(1)] = match.group(2)
    return found


def console_blocks(section: str) -> list[ConsoleBlock]:
    blocks = []
    for body in re.findall(r"```console\n(.*?)```", section, re.S):
        block = ConsoleBlock()
        for line in body.splitlines():
            if line.startswith("$ "):
                block.commands.append(line[2:])
                block.expected.append([])
            elif line.strip():
                block.expected[-1].append(line)
        blocks.append(block)
    return blocks


def pattern(line: str) -> re.Pattern[str]:
    parts = [re.escape(part) for part in " ".join(line.split()).split("…")]
    return re.compile(".*".join(parts))


def run_block(block: ConsoleBlock, cwd: Path, env: dict[str, str], substitutions: dict[str, str]) -> None:
    for written, expected in zip(block.commands, block.expected, strict=True):
        command = written
        for old, new in substitutions.items():
            command = command.replace(old, new)
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert result.returncode == 0, f"`{command}` failed:\n{result.stdout}{result.stderr}"
        lines = [" ".join(line.split()) for line in result.stdout.splitlines()]
        for want in expected:
            assert any(pattern(want).fullmatch(line) for line in lines), (
                f"`{command}`: no line like {want!r} in\n{result.stdout}"
            )
        env.update(_exports(command))


def _exports(command: str) -> dict[str, str]:
    """`NAME=$(…)` lines set a variable for the block's later commands, as in one shell session."""
    match = re.fullmatch(r"(\w+)=\$\((.*)\)", command)
    if not match:
        return {}
    value = subprocess.run(["bash", "-c", match.group(2)], capture_output=True, text=True, check=True).stdout
    return {match.group(1): value.strip()}


@pytest.fixture
def quickstart_config(config: HostConfig) -> HostConfig:
    """The test's data dir, allowed to name the tiny guest where the README does."""
    return HostConfig(
        libvirt_uri=config.libvirt_uri,
        data_dir=config.data_dir,
        accel="tcg",
        stop_timeout=60,
        allowed_paths=(config.data_dir, GUEST_DIR.parent),
    )


@pytest.fixture
def shell_env(quickstart_config: HostConfig, tmp_path: Path) -> Iterator[dict[str, str]]:
    path = write_config_file(quickstart_config, tmp_path / "config.toml")
    yield {**os.environ, "VMHOST_CONFIG": str(path), "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}"}
    subprocess.run(["ip", "link", "del", "vmhbr0"], capture_output=True, check=False)


def test_the_readme_quick_start_runs_as_written(quickstart_config, shell_env, engine, tmp_path):
    section = quick_start()
    for name, content in files(section).items():
        (tmp_path / name).write_text(content)
    assert (tmp_path / "hello.yaml").exists(), "the quick start's spec file"
    first_vm, over_http = console_blocks(section)
    substitutions = {f"{DEFAULT_DATA_DIR}/api-token": str(quickstart_config.data_dir / "api-token")}
    run_block(first_vm, tmp_path, dict(shell_env), substitutions)
    with RunningAgent(quickstart_config) as agent:
        run_block(over_http, tmp_path, dict(shell_env), {**substitutions, DEFAULT_AGENT: agent.url})
