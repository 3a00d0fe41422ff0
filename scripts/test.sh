#!/usr/bin/env bash
# The test command: install everything (scripts/setup.sh), then lint, type-check and run the whole suite
# (unit tests and the real libvirt/QEMU integration tests). Extra arguments go to pytest.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
"$repo/scripts/setup.sh"
cd "$repo"
.venv/bin/ruff check vmhost tests bench
.venv/bin/ruff format --check vmhost tests bench
.venv/bin/mypy
exec .venv/bin/pytest -p no:cacheprovider "$@"
