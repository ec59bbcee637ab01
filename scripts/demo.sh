#!/usr/bin/env bash
# The main job end to end: an MQTT federation on one machine. An embedded broker, the gateway
# and 5 edge agents (separate processes, each with its own Dirichlet share of real
# PneumoniaMNIST) train a classifier for 5 rounds; the gateway aggregates with the TFF-defined
# computation and exports ONNX; one site then diagnoses real test images with it.
# Extra arguments go to `privadx demo` (e.g. --sites 10 --rounds 10 --dataset breastmnist).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
uv run --frozen privadx demo --out "${OUT:-runs/demo}" "$@"
