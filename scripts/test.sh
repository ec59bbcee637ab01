#!/usr/bin/env bash
# The test command: lint, format check, type check, then the test suite (extra args go to pytest).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
uv run --frozen ruff check .
uv run --frozen ruff format --check .
uv run --frozen mypy
uv run --frozen pytest "$@"
