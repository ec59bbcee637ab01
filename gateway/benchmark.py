"""The optional public benchmark (``--eval-data``): a test split the coordinating centre may hold.

Each round's model is scored on it with the gateway's Keras graph (the one the ONNX export
is made from) while the sites train the next round, and the figures go into the round record
as ``test``, apart from the federated evaluation. Without ``--eval-data`` no image file is
opened, and a round's record only notes that its model's turn has passed.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from gateway.config import GatewayConfig
from privadx.common.data.arrays import SplitDataset
from privadx.common.errors import InputError
from privadx.common.runlog import json_ready

log = logging.getLogger(__name__)


def load_benchmark(config: GatewayConfig) -> SplitDataset | None:
    """The ``--eval-data`` dataset, checked against the task; ``None`` without one.

    Raises:
        InputError: Its images or classes do not fit the task.
        DataError: It cannot be found or read.
    """
    if config.eval_data is None:
        return None
    from privadx.common.data.medmnist import load_npz, resolve_dataset

    task = config.task
    dataset = load_npz(resolve_dataset(config.eval_data, config.data_dir))
    if dataset.image_shape != (task.height, task.width, task.channels) or (
        dataset.train.num_classes != task.num_classes
    ):
        raise InputError(
            f"--eval-data {dataset.name} has {dataset.train.num_classes} classes of "
            f"{dataset.image_shape} images; the task has {task.num_classes} classes "
            f"of {(task.height, task.width, task.channels)}"
        )
    return dataset


class BenchmarkScoring:
    """Scores the last closed round's model on the benchmark, once, into its record."""

    def __init__(self, config: GatewayConfig, dataset: SplitDataset | None) -> None:
        self.config = config
        self.dataset = dataset
        self.pending: tuple[int, dict[str, np.ndarray]] | None = None
        """The record index and weights of a closed round whose model is not scored yet."""

    def due(self, index: int, weights: dict[str, np.ndarray]) -> None:
        """Round record ``index`` has a new model to score (when :meth:`score_pending` runs)."""
        self.pending = (index, weights)

    def score_pending(self, model: Any, records: list[dict[str, Any]], rounds: int) -> bool:
        """Score the pending model into its record; ``True`` if the record gained figures."""
        if self.pending is None:
            return False
        index, weights = self.pending
        self.pending = None
        record = records[index]
        record["evaluated_at"] = round(time.time(), 3)
        if not self.config.evaluate or self.dataset is None:
            return False  # no public benchmark: the sites' reports are the evaluation
        from models.evaluate import evaluate_model
        from models.weights import set_weights

        t0 = time.monotonic()
        set_weights(model, weights)  # scored as the ONNX graph the sites diagnose with
        metrics = evaluate_model(
            model,
            self.dataset,
            self.config.task.preprocess(),
            positive_class=self.config.task.positive_class,
        )
        record["test"] = json_ready(metrics)
        record["evaluation_seconds"] = round(time.monotonic() - t0, 2)
        log.info(
            "round %d/%d model: test AUC %s, accuracy %s (evaluated in %.1f s)",
            record["round"],
            rounds,
            _fmt(metrics.get("auc")),
            _fmt(metrics.get("accuracy")),
            record["evaluation_seconds"],
        )
        return True


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "n/a"
