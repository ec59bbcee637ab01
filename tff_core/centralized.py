"""The centralized baseline: the same model trained on the sites' training images pooled.

The compute budget matches the federated run: each "round" trains on as many examples as the
sites of a federated round see together (each site's images x its epochs, summed, x the
share of sites per round), with the clients' optimizer, and the model is evaluated after
each such round.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from models.architectures import build_model
from models.evaluate import evaluate_model
from models.training import make_client_dataset
from privadx.common.data.arrays import LabeledImages
from privadx.common.deps import require
from privadx.common.runlog import RunFolder
from tff_core.fedavg import keras_loss

if TYPE_CHECKING:
    from tff_core.config import SimulationConfig
    from tff_core.experiment import Experiment

log = logging.getLogger(__name__)


def train_centralized(config: SimulationConfig, exp: Experiment, run: RunFolder) -> dict[str, Any]:
    """Train and evaluate the pooled baseline; append its curve to the run's metrics."""
    tf = require("tensorflow")
    # The sites' training images pooled (what they hold out for evaluation stays out).
    pooled = LabeledImages(
        np.concatenate([s.images for s in exp.sites]),
        np.concatenate([s.labels for s in exp.sites]),
        exp.dataset.class_names,
    )
    model = build_model(exp.model_spec, seed=config.seed)
    model.compile(optimizer=config.client_optimizer.to_keras(), loss=keras_loss())
    share = config.sites_per_round / config.partition.sites
    per_round = sum(config.training.epochs_for(len(s)) * len(s) for s in exp.sites)
    steps = math.ceil(share * per_round / config.batch_size)
    epochs_needed = math.ceil(steps * config.rounds * config.batch_size / len(pooled)) + 1
    data = make_client_dataset(
        pooled,
        exp.preprocess,
        batch_size=config.batch_size,
        epochs=epochs_needed,
        seed=config.seed,
        augmentation=config.augmentation,
    )
    final: dict[str, Any] = {}
    started, cpu_started = time.monotonic(), time.process_time()

    class RoundEval(tf.keras.callbacks.Callback):  # type: ignore[name-defined]
        def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            rate = config.training_for(epoch + 1).optimizer.learning_rate  # the sites' schedule
            model.optimizer.learning_rate.assign(rate)

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            nonlocal final
            final = evaluate_model(  # scored as the federated model is
                model, exp.dataset, exp.preprocess, positive_class=exp.positive_class
            )
            run.append_metrics(
                {
                    "series": "centralized",
                    "round": epoch + 1,
                    "train": {"loss": (logs or {}).get("loss")},
                    "test": final,
                }
            )
            log.info(
                "centralized %d/%d: test AUC %.4f, accuracy %.4f",
                epoch + 1,
                config.rounds,
                final["auc"],
                final["accuracy"],
            )

    model.fit(
        data.map(lambda b: (b["x"], b["y"])),
        epochs=config.rounds,
        steps_per_epoch=steps,
        verbose=0,
        callbacks=[RoundEval()],
    )
    return {
        **final,
        "seconds": round(time.monotonic() - started, 1),
        "cpu_seconds": round(time.process_time() - cpu_started, 1),
    }
