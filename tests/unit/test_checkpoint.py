"""The gateway checkpoint: commit, reload, pending updates, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gateway.checkpoint import RunCheckpoint
from gateway.rounds import AcceptedUpdate
from privadx.common.errors import InputError

W = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, np.float32)}
SETTINGS = {"seed": 0, "aggregation": "norm-bound"}


def _commit(cp: RunCheckpoint, round_num: int, scale: float = 1.0) -> None:
    cp.commit_round(
        run_id="r1",
        round_num=round_num,
        weights={k: v * scale for k, v in W.items()},
        server_state=[np.array(3, np.int64), np.array([0.5, 2.0], np.float64)],
        records=[{"round": i} for i in range(1, round_num + 1)],
        settings=SETTINGS,
    )


def test_fresh_folder_has_no_progress(tmp_path: Path) -> None:
    assert RunCheckpoint(tmp_path).load("r1", SETTINGS) is None


def test_commit_and_reload_with_pending_updates(tmp_path: Path) -> None:
    cp = RunCheckpoint(tmp_path)
    _commit(cp, 1)
    cp.save_pending(2, AcceptedUpdate("s1", W, 40, {"loss": 0.5}, 1234))
    _commit(cp, 2, scale=2.0)  # round 2 closes: its pending updates go
    cp.save_pending(3, AcceptedUpdate("s2", W, 7, {"loss": 0.25}, 99))
    progress = RunCheckpoint(tmp_path).load("r1", SETTINGS)
    assert progress is not None and progress.round == 2
    np.testing.assert_array_equal(progress.weights["a"], W["a"] * 2)
    assert list(progress.weights) == ["a", "b"]
    assert progress.server_state[0].dtype == np.int64 and progress.server_state[0] == 3
    assert [r["round"] for r in progress.records] == [1, 2]
    assert list(progress.pending) == ["s2"] and progress.pending["s2"].examples == 7
    assert not (tmp_path / "pending" / "round-2").exists()
    assert sorted(p.name for p in tmp_path.glob("state-*.npz")) == ["state-2.npz"]


def test_refuses_another_run_or_changed_settings(tmp_path: Path) -> None:
    cp = RunCheckpoint(tmp_path)
    _commit(cp, 1)
    with pytest.raises(InputError, match="--run-id r1"):
        cp.load("r2", SETTINGS)
    with pytest.raises(InputError, match="changed settings: seed"):
        cp.load("r1", {**SETTINGS, "seed": 1})
    assert cp.existing_run_id() == "r1"
