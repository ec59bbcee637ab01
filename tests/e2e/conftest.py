"""What the end-to-end tests share: one real simulation run, made once per session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import SUMMARY_KEYS, run_cli


@pytest.fixture(scope="session")
def sim_run(tmp_path_factory: pytest.TempPathFactory, breast_npz: Path) -> Path:
    out = tmp_path_factory.mktemp("run")
    proc = run_cli(
        "simulate",
        "--dataset",
        str(breast_npz),
        "--sites",
        "4",
        "--rounds",
        "2",
        "--local-epochs",
        "4",  # with 1, AUC 0.49: an untrained model, useless for the int8 comparison below
        "--clients-per-round",
        "3",
        "--centralized",
        "--personalise",
        "--seed",
        "7",
        "--json",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert set(summary) >= SUMMARY_KEYS
    return out
