#!/usr/bin/env bash
# The whole check, the same locally and in CI: install, format, lint, types, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'
.venv/bin/ruff format --check highmark tests bench
.venv/bin/ruff check highmark tests bench
.venv/bin/mypy
if [ "$#" -gt 0 ]; then
  exec .venv/bin/pytest -q "$@"
fi
# Two processes side by side (tests/conftest.py keeps every MariaDB test on one of them, since
# MariaDB's upper bound is server-wide), then the timing-sensitive fleet alone.
.venv/bin/pytest -q --durations=15 -n 2 --dist loadgroup -m "not serial"
.venv/bin/pytest -q --durations=5 -m serial
