"""The example plugins' suites (`.venv-plugins/bin/pytest plugins`, from the repository root) run on the core's
real-libvirt harness: its fixtures (tests/integration/conftest.py) and the ZStack suite's callback receiver,
bridge and image fixtures (tests/integration/test_zstack.py)."""

import sys
from pathlib import Path

# pytest puts this directory on sys.path (it is no package); the core's `tests` package lives one level up.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

pytest_plugins = ["tests.integration.conftest", "tests.integration.test_zstack"]
