"""The edge agent's model folder: the kept update, the global model written in the background."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from edge.store import ModelStore
from privadx.common.weights_io import load_weights

WEIGHTS = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, np.float32)}


def test_sent_update_is_kept_and_its_round_submitted(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.record_sent(b"envelope", "run-a", 3, "ann-1")
    reopened = ModelStore(tmp_path)  # what a restarted agent reads
    assert reopened.submitted("run-a", 3) and not reopened.submitted("run-a", 4)
    assert reopened.outbox_for("run-a", 3, "ann-2") == b"envelope"
    assert reopened.outbox_for("run-a", 3, "ann-1") is None  # already sent under ann-1
    assert reopened.outbox_for("run-a", 2, "ann-2") is None


def test_global_models_are_written_in_arrival_order(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    for version in range(5):
        store.save_global({k: v + version for k, v in WEIGHTS.items()}, {"round": version})
    store.flush()
    weights, meta = load_weights(tmp_path / "global.npz")
    assert meta["round"] == 4
    np.testing.assert_array_equal(weights["w"], WEIGHTS["w"] + 4)


def test_a_failed_global_write_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = ModelStore(tmp_path)
    (tmp_path / "global.npz").mkdir()  # the rename over it fails
    with caplog.at_level(logging.ERROR):
        store.save_global(WEIGHTS, {"round": 1})
        store.flush()
    assert "could not keep the global model" in caplog.text
    store.record_sent(b"next", "run-a", 1, "ann-1")  # the site carries on
    assert ModelStore(tmp_path).submitted("run-a", 1)
