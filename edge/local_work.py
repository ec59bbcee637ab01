"""What a site computes on its own images: local training and held-out scoring.

The agent (:mod:`edge.agent`) decides when; this decides how. The site's images are loaded
once and split into those trained on and those held out for federated evaluation (never
trained on). Training and scoring run in this process with TensorFlow kept between rounds,
or, with ``--low-memory``, in a child process per job (:mod:`edge.keras_worker`); both
compute the same weights and logits.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from edge.config import EdgeConfig
from edge.evaluation import SiteOod, score_held_out
from edge.memory import release_library_pages
from models.settings import LocalTraining
from models.spec import ModelSpec
from privadx.common.data.arrays import LabeledImages
from privadx.common.data.local import load_local_dataset
from privadx.common.data.medmnist import resolve_dataset
from privadx.common.errors import InputError
from privadx.common.evaluation.holdout import split_holdout
from privadx.common.model_info import ModelInfo
from privadx.common.ood import OodSums, Reference

log = logging.getLogger(__name__)


class LocalWork:
    """A site's images and the training and scoring done on them."""

    def __init__(self, config: EdgeConfig) -> None:
        self.config = config
        self.data: LabeledImages | None = None
        """The local images trained on."""
        self.held_out: LabeledImages | None = None
        """The local images kept back for federated evaluation (never trained on)."""
        self._ood: SiteOod | None = None
        self._keras: Any = None
        self._keras_spec: ModelSpec | None = None

    def prepare(self, info: ModelInfo) -> None:
        """Load the images and, unless in low-memory mode, build the Keras model (cached).

        Raises:
            PrivadxError: The images cannot be loaded or do not fit the model.
        """
        self.training_images(info)
        if not self.config.low_memory:  # there, TensorFlow lives in a child per job
            self._keras_model(info.model_spec)

    def training_images(self, info: ModelInfo) -> LabeledImages:
        """The images trained on (loaded and split on first use)."""
        if self.data is None:
            local = self._load(self.config.data, info)
            if self.config.eval_data is not None:
                self.data = local
                self.held_out = self._load(self.config.eval_data, info)
            else:
                self.data, self.held_out = split_holdout(local, self.config.eval_fraction)
            log.info(
                "local images: %d to train on, %d held out for evaluation",
                len(self.data),
                len(self.held_out),
            )
        return self.data

    def _load(self, source: str, info: ModelInfo) -> LabeledImages:
        names = info.class_names
        report = load_local_dataset(resolve_dataset(source, fetch=False), info.preprocess, names)
        if report.data.num_classes != len(names):
            raise InputError(
                f"local data has {report.data.num_classes} classes; the model has {len(names)}"
            )
        if report.skipped:
            log.warning("%d local image files could not be used", len(report.skipped))
        return report.data

    def train(
        self,
        info: ModelInfo,
        weights: dict[str, np.ndarray],
        settings: LocalTraining,
        *,
        seed: int,
    ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """``weights`` trained on the site's images for one round, and the training metrics.

        Raises:
            ModelError: The weights do not fit the model, or the training process failed.
        """
        data = self.training_images(info)
        if self.config.low_memory:
            from edge.keras_worker import train_in_child

            return train_in_child(
                info, weights, data, settings.to_dict(), seed=seed, threads=self.config.threads
            )
        from models.training import train_weights

        keras = self._keras_model(info.model_spec)
        trained, metrics = train_weights(keras, weights, data, info.preprocess, settings, seed=seed)
        release_library_pages()  # see edge.memory: TensorFlow's import and tracing
        return trained, metrics

    def score_held_out(self, info: ModelInfo, weights: dict[str, np.ndarray]) -> np.ndarray | None:
        """Logits of ``weights`` on the held-out images; ``None`` if the site holds none."""
        self.training_images(info)
        if self.held_out is None or len(self.held_out) == 0:
            return None
        if self.config.low_memory:
            from edge.keras_worker import score_in_child

            return score_in_child(info, weights, self.held_out, threads=self.config.threads)
        keras = self._keras_model(info.model_spec)
        return score_held_out(keras, weights, self.held_out, info.preprocess)

    def ood_sums(self, reference: Reference | None) -> OodSums:
        """This site's out-of-distribution sums (:meth:`edge.evaluation.SiteOod.sums`)."""
        if self._ood is None:
            assert self.data is not None and self.held_out is not None
            self._ood = SiteOod(self.data, self.held_out)
        return self._ood.sums(reference)

    def _keras_model(self, spec: ModelSpec) -> Any:
        """The Keras model whose architecture training uses, built once per spec."""
        from models.architectures import build_model

        if self._keras is None or self._keras_spec != spec:
            self._configure_tensorflow()
            self._keras = build_model(spec)
            self._keras_spec = spec
            release_library_pages()
        return self._keras

    def _configure_tensorflow(self) -> None:
        from privadx.common.deps import require

        tf = require("tensorflow")
        try:
            tf.config.threading.set_intra_op_parallelism_threads(self.config.threads)
            tf.config.threading.set_inter_op_parallelism_threads(self.config.threads)
        except RuntimeError:
            pass  # already initialised in this process
