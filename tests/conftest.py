"""Options of the whole suite.

`--regenerate-golden` rewrites the golden files (tests/unit/golden/) from what the renderers produce now instead
of comparing with them; review the diff afterwards. The `golden` fixture is the one comparison the golden tests use.
"""

from collections.abc import Callable
from pathlib import Path

import pytest

Golden = Callable[[Path, str], None]

pytest_plugins = ["tests.unit.xen_standin"]
"""The `standin` fixture (a stand-in xl on PATH) for the Xen driver tests in tests/unit and tests/security."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--regenerate-golden",
        action="store_true",
        help="rewrite the golden files with the current rendering instead of comparing (then review the diff)",
    )


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Golden:
    """golden(path, rendered): assert `rendered` is the file's content, or rewrite the file with --regenerate-golden."""
    regenerate = bool(request.config.getoption("--regenerate-golden"))

    def check(path: Path, rendered: str) -> None:
        if regenerate:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(rendered)
        assert rendered == path.read_text(), f"{path.name}: regenerate with --regenerate-golden and review the diff"

    return check
