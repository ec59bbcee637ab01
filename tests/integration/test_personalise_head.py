"""The head refit reads the model as it is: its features times the head are the model's logits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.personalise import HeadFit, head_features, personalise
from models.spec import OUTPUT_NAME, Architecture, ModelSpec
from privadx.common.data.medmnist import load_npz
from privadx.common.metrics import roc_auc
from privadx.common.preprocess import PreprocessSpec

pytest.importorskip("tensorflow")


@pytest.mark.parametrize("arch", list(Architecture))
def test_features_times_the_head_are_the_models_logits(breast_npz: Path, arch) -> None:  # type: ignore[no-untyped-def]
    from models.architectures import build_model
    from models.evaluate import predict_logits

    spec, pre = ModelSpec(arch=arch, dropout=0.3), PreprocessSpec()
    model = build_model(spec, seed=3)
    images = load_npz(breast_npz).test.images[:64]
    kernel, bias = model.get_layer(OUTPUT_NAME).get_weights()
    via_head = head_features(model, images, pre) @ kernel + bias
    assert np.max(np.abs(via_head - predict_logits(model, images, pre))) < 1e-4


def test_the_global_heads_figures_are_the_models_own(breast_npz: Path) -> None:
    from models.architectures import build_model
    from models.evaluate import predict_logits

    data = load_npz(breast_npz)
    pre = PreprocessSpec()
    model = build_model(ModelSpec(dropout=0.0), seed=1)
    sites, held = [data.train.subset(np.arange(0, 120))], [data.val]
    result = personalise(
        model, sites, held, pre, class_names=data.class_names, positive_class=1, fit=HeadFit()
    )
    (row,) = result["sites"]
    logits = predict_logits(model, data.val.images, pre)
    exact = roc_auc(data.val.labels == 1, logits[:, 1] - logits[:, 0])
    assert row["global_auc"] == pytest.approx(exact, abs=1e-6)
    assert row["held_out_examples"] == len(data.val) and row["train_examples"] == 120
