#!/usr/bin/env bash
# The main job end to end: federated training of a pneumonia classifier across 10 simulated
# hospital sites with TFF, ONNX export, then diagnosis of real test images at one site.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
OUT="${1:-runs/demo}"
uv run --frozen privadx simulate --dataset pneumoniamnist --sites 10 --partition dirichlet \
    --alpha 0.5 --rounds "${ROUNDS:-20}" --local-epochs 2 --centralized --out "$OUT"
uv run --frozen python - "$OUT" <<'PY'
import sys
from pathlib import Path
import numpy as np
from PIL import Image
from common.data.medmnist import load_npz, resolve_dataset
test = load_npz(resolve_dataset("pneumoniamnist")).test
folder = Path(sys.argv[1]) / "site_images"
folder.mkdir(exist_ok=True)
for i in range(6):
    Image.fromarray(test.images[i, ..., 0]).save(folder / f"patient{i}_{test.class_names[test.labels[i]]}.png")
PY
uv run --frozen privadx diagnose "$OUT/model.onnx" "$OUT/site_images"
