#!/usr/bin/env bash
# The test command: install everything (scripts/setup.sh), then lint, type-check and run the whole suite
# (unit tests and the real libvirt/QEMU and runc integration tests) with no plugin installed, then the
# example plugins' own suites in the environment that has them. Extra arguments go to both pytest runs.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
"$repo/scripts/setup.sh"
cd "$repo"
.venv/bin/ruff check vmhost tests bench plugins
.venv/bin/ruff format --check vmhost tests bench plugins
.venv/bin/mypy
.venv/bin/lint-imports
.venv-plugins/bin/mypy plugins/vmhost-ex-start/vmhost_ex_start plugins/vmhost-nic-tuning/vmhost_nic_tuning
.venv/bin/pytest -p no:cacheprovider "$@"
exec .venv-plugins/bin/pytest -p no:cacheprovider "$@" plugins
