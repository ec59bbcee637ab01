#!/usr/bin/env bash
# The test command: lint, format check, type check, then the whole test suite (unit, real
# Mosquitto broker, end to end). Extra arguments go to pytest (e.g. -m "not slow").
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

# need COMMAND "DEBIAN PACKAGES" WHY: install the packages when COMMAND is missing.
need() {
    command -v "$1" >/dev/null 2>&1 && return 0
    echo "installing $2 ($3)..." >&2
    if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then
        # shellcheck disable=SC2086
        (apt-get update -qq && apt-get install -y -qq $2) >&2
    else
        echo "please install $2 (e.g. sudo apt-get install $2)" >&2
        exit 1
    fi
}
need mosquitto "mosquitto mosquitto-clients" "integration tests start their own broker"
need chromium chromium "the diagnosis report's test opens the page in headless Chromium"

uv run --frozen ruff check .
uv run --frozen ruff format --check .
uv run --frozen mypy
# Two workers (the machine's 2 cores; half of them sat idle while one test waited on a broker,
# a deadline or a subprocess). Each file runs whole on one worker, so a module's fixtures are
# built once; files start longest first (tests/conftest.py orders them).
uv run --frozen pytest -n 2 --dist loadfile --no-loadscope-reorder "$@"
