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
.venv/bin/pytest -q --durations=20 "$@"
