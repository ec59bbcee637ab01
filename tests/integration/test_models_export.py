"""Keras models, ONNX export parity on real images, and diagnosis == Keras on real files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from common.data.medmnist import load_npz
from common.metrics import decide, softmax
from common.preprocess import PreprocessSpec, to_model_input
from common.weights_io import load_weights, save_weights
from edge.diagnose import diagnose
from edge.onnx_model import OnnxClassifier
from models.architectures import build_model
from models.evaluate import predict_logits
from models.onnx_export import export_onnx, verify_parity
from models.rebuild import model_from_weights
from models.spec import Architecture, ModelSpec
from models.weights import get_weights, set_weights

tf = pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, pneumonia_npz: Path):
    """A CNN trained briefly on real PneumoniaMNIST, saved and exported."""
    ds = load_npz(pneumonia_npz)
    spec, pre = ModelSpec(), PreprocessSpec()
    model = build_model(spec, seed=0)
    model.compile(
        tf.keras.optimizers.SGD(0.05, momentum=0.9),
        tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(
        to_model_input(ds.train.images[:1024], pre),
        ds.train.labels[:1024],
        epochs=1,
        batch_size=32,
        verbose=0,
    )
    folder = tmp_path_factory.mktemp("model")
    meta = {
        "model_spec": spec.to_json(),
        "preprocess": pre.to_json(),
        "class_names": list(ds.class_names),
        "positive_class": 1,
        "threshold": 0.61,
        "provenance": {"dataset": "pneumoniamnist", "rounds": 1},
    }
    save_weights(folder / "weights.npz", get_weights(model), meta)
    export_onnx(model, meta, folder / "model.onnx")
    return model, ds, folder


def test_cnn_is_batchnorm_free_and_small() -> None:
    model = build_model(ModelSpec())
    assert not any(isinstance(layer, tf.keras.layers.BatchNormalization) for layer in model.layers)
    assert model.non_trainable_weights == []
    assert 50_000 < model.count_params() < 100_000
    assert model.output_shape == (None, 2)


def test_mobilenet_for_larger_rgb_inputs() -> None:
    spec = ModelSpec(
        arch=Architecture.MOBILENET,
        height=64,
        width=64,
        channels=3,
        num_classes=9,
        width_multiplier=0.5,
    )
    model = build_model(spec)
    assert model.output_shape == (None, 9)
    assert not any(isinstance(layer, tf.keras.layers.BatchNormalization) for layer in model.layers)


def test_same_seed_same_initial_weights() -> None:
    a, b = (
        get_weights(build_model(ModelSpec(), seed=5)),
        get_weights(build_model(ModelSpec(), seed=5)),
    )
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_weights_roundtrip_through_file(trained) -> None:
    model, ds, folder = trained
    weights, meta = load_weights(folder / "weights.npz")
    rebuilt, pre = model_from_weights(weights, meta)
    x = ds.test.images[:16]
    assert np.array_equal(predict_logits(model, x, pre), predict_logits(rebuilt, x, pre))


def test_set_weights_rejects_wrong_shapes(trained) -> None:
    model, _, _ = trained
    bad = get_weights(model)
    first = next(iter(bad))
    bad[first] = np.zeros((1, 1), np.float32)
    from common.errors import ModelError

    with pytest.raises(ModelError, match=first):
        set_weights(build_model(ModelSpec()), bad)


def test_onnx_is_checked_and_carries_metadata(trained) -> None:
    _, _, folder = trained
    proto = onnx.load(folder / "model.onnx")
    onnx.checker.check_model(proto, full_check=True)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["privadx.class_names"]) == ["normal", "pneumonia"]
    assert PreprocessSpec.from_json(meta["privadx.preprocess"]) == PreprocessSpec()
    assert proto.opset_import[0].version == 17
    assert proto.graph.input[0].name == "image"
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 0  # dynamic batch
    sha = (folder / "model.onnx.sha256").read_text().split()[0]
    import hashlib

    assert sha == hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()


def test_onnx_runtime_matches_keras_on_the_whole_test_split(trained) -> None:
    model, ds, folder = trained
    diff = verify_parity(model, folder / "model.onnx", ds.test.images, PreprocessSpec())
    assert diff <= 1e-4
    onnx_model = OnnxClassifier(folder / "model.onnx")
    keras_logits = predict_logits(model, ds.test.images, PreprocessSpec())
    assert np.max(np.abs(onnx_model.logits(ds.test.images) - keras_logits)) <= 1e-4


def test_diagnose_gives_keras_prediction_on_real_png_files(trained, tmp_path: Path) -> None:
    model, ds, folder = trained
    for i in range(40):
        Image.fromarray(ds.test.images[i, ..., 0]).save(tmp_path / f"img{i:02}.png")
    results = diagnose(OnnxClassifier(folder / "model.onnx"), [tmp_path])
    keras_probs = softmax(predict_logits(model, ds.test.images[:40], PreprocessSpec()))
    keras_pred = decide(keras_probs, positive_class=1, threshold=0.61)
    assert [r.predicted for r in results] == [ds.class_names[k] for k in keras_pred]
    for r, p in zip(results, keras_probs, strict=True):
        assert r.probabilities["pneumonia"] == pytest.approx(p[1], abs=1e-5)


def test_diagnose_reads_npz_and_reports_bad_files(trained, tmp_path: Path) -> None:
    _, ds, folder = trained
    np.savez(tmp_path / "batch.npz", images=ds.test.images[:5, ..., 0])
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    results = diagnose(
        OnnxClassifier(folder / "model.onnx"), [tmp_path / "batch.npz", tmp_path / "broken.jpg"]
    )
    assert [r.ok for r in results] == [True] * 5 + [False]
    assert "broken.jpg" in results[-1].error
