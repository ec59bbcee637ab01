"""int8 updates over a real Mosquitto: the run completes and updates shrink about fourfold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.federation import federate, split_sites
from models.settings import LocalTraining
from privadx.common.weights_io import load_weights
from privadx.common.wire.update_codec import Encoding

pytest.importorskip("tensorflow_federated")


@pytest.mark.slow
def test_int8_updates_over_mosquitto(tmp_path: Path, breast_npz: Path) -> None:
    sites = split_sites(breast_npz, 2, alpha=1.0, seed=2)
    federate(
        tmp_path,
        sites,
        dataset=str(breast_npz),
        rounds=2,
        seed=0,
        federation="int8",
        training=LocalTraining(local_epochs=1, encoding=Encoding.INT8),
        export_onnx=False,
    )
    records = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["updates"] for r in records] == [2, 2]
    weights, _ = load_weights(tmp_path / "run" / "weights.npz")
    float32_bytes = sum(w.nbytes for w in weights.values())
    for record in records:
        for nbytes in record["update_bytes"].values():
            assert nbytes < 0.3 * float32_bytes, (nbytes, float32_bytes)
