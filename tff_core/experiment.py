"""The data side of a simulation: the dataset, the specs it implies and the sites' shards."""

from __future__ import annotations

from dataclasses import dataclass

from models.spec import ModelSpec
from privadx.common.data.arrays import LabeledImages, SplitDataset
from privadx.common.data.catalog import CATALOG
from privadx.common.data.medmnist import load_npz, resolve_dataset
from privadx.common.data.partition import partition
from privadx.common.evaluation.holdout import split_holdout
from privadx.common.preprocess import PreprocessSpec
from tff_core.config import SimulationConfig


@dataclass(frozen=True)
class Experiment:
    """The data side of a run: dataset, specs and the sites' shards."""

    dataset: SplitDataset
    preprocess: PreprocessSpec
    model_spec: ModelSpec
    positive_class: int
    sites: list[LabeledImages]
    """What each site trains on."""
    held_out: list[LabeledImages]
    """What each site holds back for federated evaluation (never trained on)."""


def prepare(config: SimulationConfig) -> Experiment:
    """Load the dataset, derive the model and preprocessing specs, and partition it."""
    dataset = load_npz(resolve_dataset(config.dataset, config.data_dir))
    h, w, c = dataset.image_shape
    info = CATALOG.get(dataset.name)
    parts = partition(dataset.train.labels, config.partition)
    splits = [split_holdout(dataset.train.subset(p), config.eval_fraction) for p in parts]
    return Experiment(
        dataset=dataset,
        preprocess=PreprocessSpec(height=h, width=w, channels=c),
        model_spec=ModelSpec(
            arch=config.arch,
            height=h,
            width=w,
            channels=c,
            num_classes=len(dataset.class_names),
            width_multiplier=config.width_multiplier,
        ),
        positive_class=info.positive_class if info else 1,
        sites=[train for train, _ in splits],
        held_out=[held for _, held in splits],
    )
