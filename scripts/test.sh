#!/usr/bin/env bash
# The test command: lint, format check, type check, then the whole test suite (unit, real
# Mosquitto broker, end to end). Extra arguments go to pytest (e.g. -m "not slow").
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
if ! command -v mosquitto >/dev/null 2>&1; then
    echo "installing the Mosquitto broker (integration tests start their own)..." >&2
    if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then
        (apt-get update -qq && apt-get install -y -qq mosquitto mosquitto-clients) >&2
    else
        echo "please install mosquitto (e.g. sudo apt-get install mosquitto)" >&2
        exit 1
    fi
fi
uv run --frozen ruff check .
uv run --frozen ruff format --check .
uv run --frozen mypy
uv run --frozen pytest "$@"
