"""One model-information type for model messages, weights files and ONNX metadata."""

from __future__ import annotations

import json

import pytest

from privadx.common.errors import ModelError
from privadx.common.model_info import ModelInfo
from privadx.common.task import task_from_dataset

PRE = {"height": 28, "width": 28, "channels": 1, "mean": 0.5, "std": 0.5}


def _info() -> ModelInfo:
    from dataclasses import replace

    return replace(
        task_from_dataset("breastmnist").model_info(),
        threshold=0.3,
        temperature=1.7,
        provenance={"run": "r1", "rounds": 3},
    )


def test_round_trips_through_meta_and_onnx_properties() -> None:
    info = _info()
    assert ModelInfo.from_meta(json.loads(json.dumps(info.to_meta()))) == info
    props = info.to_onnx_props()
    assert props["privadx.format"] == "1" and json.loads(props["privadx.temperature"]) == 1.7
    assert ModelInfo.from_onnx_props(props, "m.onnx") == info
    assert info.calibrated and info.positive_class == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"class_names": ["only"]}, "class names"),
        ({"positive_class": 7}, "positive class"),
        ({"positive_class": True}, "positive_class"),
        ({"threshold": float("nan")}, "threshold"),
        ({"threshold": 1.5}, "threshold"),
        ({"temperature": 0}, "temperature"),
        ({"model_spec": '{"arch": "cnn", "height": "28"}'}, "model spec"),
        (
            {
                "preprocess": json.dumps(
                    {"height": 64, "width": 64, "channels": 1, "mean": 0.5, "std": 0.5}
                )
            },
            "does not fit",
        ),
        ({"provenance": [1]}, "provenance"),
    ],
)
def test_malformed_metadata_is_refused_with_a_reason(change: dict, message: str) -> None:
    meta = {**_info().to_meta(), **change}
    with pytest.raises(ModelError, match=message):
        ModelInfo.from_meta(meta)


def test_onnx_properties_of_another_kind_are_refused() -> None:
    with pytest.raises(ModelError, match="not a PrivaDx model"):
        ModelInfo.from_onnx_props({}, "x.onnx")
    props = {**_info().to_onnx_props(), "privadx.format": "9"}
    with pytest.raises(ModelError, match="format '9'"):
        ModelInfo.from_onnx_props(props, "x.onnx")
    props = {**_info().to_onnx_props(), "privadx.class_names": "[not json"}
    with pytest.raises(ModelError, match="malformed"):
        ModelInfo.from_onnx_props(props, "x.onnx")
