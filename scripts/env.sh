#!/usr/bin/env bash
# Create or update the project environment (.venv) from uv.lock; installs uv if missing.
# Sourced by scripts/demo.sh and scripts/test.sh, so both work on a fresh machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if ! command -v uv >/dev/null 2>&1; then
    echo "installing uv (the project's environment manager) with pip..." >&2
    python3 -m pip install --quiet --user uv >&2 || python3 -m pip install --quiet uv >&2
    export PATH="$HOME/.local/bin:$PATH"
fi
uv sync --frozen --all-extras --quiet >&2
# Real MedMNIST files beside the checkout (this workplace's shared/) are used when present;
# elsewhere datasets are downloaded (MD5-checked) into $PRIVADX_DATA or ~/.local/share/privadx.
if [[ -z "${PRIVADX_DATA:-}" && -f "$ROOT/../shared/data/medmnist/pneumoniamnist.npz" ]]; then
    export PRIVADX_DATA="$ROOT/../shared/data/medmnist"
fi
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
