"""What the ServerApp and the ClientApps share: the comparison's settings, data and model.

Everything comes from PrivaDx itself (its model builder, split and local training), found on
``PYTHONPATH``, so the federation layer is the only difference from a PrivaDx run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PeerSpec:
    """The comparison's settings (the JSON file ``harness/flower_deployment.py`` writes)."""

    npz: str
    sites: int
    alpha: float
    seed: int
    rounds: int
    training: dict[str, Any]
    out: str

    @classmethod
    def load(cls, path: str) -> PeerSpec:
        """The settings in the JSON file ``path``."""
        return cls(**json.loads(Path(path).read_text()))

    @cached_property
    def dataset(self) -> Any:
        """The MedMNIST file's splits (loaded once)."""
        from privadx.common.data.medmnist import load_npz

        return load_npz(Path(self.npz))

    @property
    def preprocess(self) -> Any:
        """How images become model inputs (PrivaDx's preprocessing of this dataset)."""
        from privadx.common.preprocess import PreprocessSpec

        h, w, c = self.dataset.image_shape
        return PreprocessSpec(height=h, width=w, channels=c)

    def site(self, index: int) -> Any:
        """Site ``index``'s training images: PrivaDx's Dirichlet split of the training set."""
        from privadx.common.data.partition import PartitionSpec, partition

        train = self.dataset.train
        parts = partition(train.labels, PartitionSpec(sites=self.sites, alpha=self.alpha,
                                                      seed=self.seed))  # fmt: skip
        return train.subset(parts[index])

    def model(self) -> Any:
        """The model every run starts from (PrivaDx's builder, the run's seed)."""
        from models.architectures import build_model
        from models.spec import ModelSpec

        h, w, c = self.dataset.image_shape
        spec = ModelSpec(height=h, width=w, channels=c,
                         num_classes=len(self.dataset.class_names))  # fmt: skip
        return build_model(spec, seed=self.seed)

    def local_training(self) -> Any:
        """PrivaDx's local-training settings of the comparison."""
        from models.settings import LocalTraining

        return LocalTraining.from_dict(self.training)
