"""Keras models, ONNX export parity on real images, and diagnosis == Keras on real files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from edge.diagnose import diagnose
from edge.onnx_model import OnnxClassifier
from models.architectures import build_model
from models.evaluate import predict_logits
from models.onnx_export import export_onnx, verify_parity
from models.rebuild import model_from_weights
from models.spec import Architecture, ModelSpec
from models.weights import get_weights, set_weights
from privadx.common.data.medmnist import load_npz
from privadx.common.metrics import decide, softmax
from privadx.common.preprocess import PreprocessSpec, to_model_input
from privadx.common.weights_io import load_weights, save_weights

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


def test_a_wider_cnn_scales_its_channels_and_exports(tmp_path: Path, pneumonia_npz: Path) -> None:
    base = build_model(ModelSpec(), seed=0)
    assert [w.shape[-1] for w in base.trainable_weights if len(w.shape) == 4] == [
        16, 16, 32, 32, 64, 64
    ]  # fmt: skip
    spec = ModelSpec(width_multiplier=1.5)
    wide = build_model(spec, seed=0)
    assert [w.shape[-1] for w in wide.trainable_weights if len(w.shape) == 4] == [
        24, 24, 48, 48, 96, 96
    ]  # fmt: skip
    assert 2.0 < wide.count_params() / base.count_params() < 2.5  # convolutions grow ~1.5^2
    meta = {"model_spec": spec.to_json(), "preprocess": PreprocessSpec().to_json(),
            "class_names": ["a", "b"], "positive_class": 1}  # fmt: skip
    export_onnx(wide, meta, tmp_path / "wide.onnx")
    images = load_npz(pneumonia_npz).test.images[:32]
    assert verify_parity(wide, tmp_path / "wide.onnx", images, PreprocessSpec()) < 1e-4


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
    from privadx.common.errors import ModelError

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


def _randomize_normalization(model: tf.keras.Model, seed: int) -> None:
    """Give GroupNormalization non-trivial gamma and beta (they start at 1 and 0)."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if "gamma" in w.name or "beta" in w.name:
            w.assign(rng.normal(0.0, 1.0, w.shape).astype(np.float32))


@pytest.mark.parametrize(
    "spec",
    [
        ModelSpec(),
        ModelSpec(height=33, width=30, channels=3, num_classes=4),
        ModelSpec(
            arch=Architecture.MOBILENET, height=33, width=47, channels=3, num_classes=3,
            width_multiplier=0.5,
        ),
        ModelSpec(arch=Architecture.MOBILENET, height=64, width=64, channels=1),
    ],
    ids=["cnn", "cnn-odd-rgb", "mobilenet-odd-rgb", "mobilenet-gray"],
)  # fmt: skip
def test_direct_onnx_graph_matches_keras(spec: ModelSpec) -> None:
    """The hand-written graph equals Keras for both architectures, odd sizes included
    (TensorFlow's asymmetric 'same' padding at stride 2), at any batch size."""
    import onnxruntime as ort

    from models.class_maps import keras_class_maps
    from models.onnx_export import to_onnx
    from models.onnx_graph import keras_to_onnx

    model = build_model(spec, seed=3)
    _randomize_normalization(model, seed=4)
    proto = to_onnx(model)
    direct = keras_to_onnx(
        model, opset=17, input_name="image", output_name="logits", cam_name="class_maps"
    )
    assert proto.SerializeToString() == direct.SerializeToString()  # not the tf2onnx path
    onnx.checker.check_model(proto, full_check=True)
    ops = {node.op_type for node in proto.graph.node}
    assert ops.isdisjoint({"Shape", "Gather", "Concat", "Cast"})  # no run-time shape arithmetic
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(5)
    for batch in (1, 7):
        x = rng.normal(0, 1, (batch, spec.height, spec.width, spec.channels)).astype(np.float32)
        onnx_logits, onnx_maps = session.run(None, {"image": x})
        keras_logits = model(x, training=False).numpy()
        assert onnx_logits.shape == (batch, spec.num_classes)
        assert np.max(np.abs(onnx_logits - keras_logits)) <= 1e-5
        keras_maps = keras_class_maps(model, x)
        assert onnx_maps.shape == keras_maps.shape
        assert onnx_maps.shape[:2] == (batch, spec.num_classes)
        assert np.max(np.abs(onnx_maps - keras_maps)) <= 1e-4
        # Zhou et al.: a class's map averaged over positions, plus the bias, is its logit
        bias = model.layers[-1].bias.numpy()
        assert np.max(np.abs(onnx_maps.mean(axis=(2, 3)) + bias - keras_logits)) <= 1e-4


def test_cnn_onnx_graph_is_compact(trained) -> None:
    _, _, folder = trained
    proto = onnx.load(folder / "model.onnx")
    assert proto.producer_name == "privadx"
    assert len(proto.graph.node) <= 45  # tf2onnx wrote 335 nodes for the same CNN


def test_other_keras_models_go_through_tf2onnx() -> None:
    """Layers the direct writer does not know (here BatchNormalization, and a branch) are
    refused by it by name, and export falls back to tf2onnx with the same parity."""
    import onnxruntime as ort

    from models.onnx_export import to_onnx
    from models.onnx_graph import UnsupportedModelError, keras_to_onnx

    layers = tf.keras.layers
    inputs = tf.keras.Input((20, 20, 1), name="image")
    x = layers.Conv2D(4, 3, name="conv")(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    chain = tf.keras.Model(inputs, layers.Dense(2, name="logits")(x))
    y = layers.Conv2D(1, 3, padding="same", name="side")(inputs)
    y = layers.Add(name="add")([inputs, y])
    y = layers.GlobalAveragePooling2D(name="gap2")(y)
    branch = tf.keras.Model(inputs, layers.Dense(2, name="out")(y))
    for model, name in ((chain, "bn"), (branch, "add")):
        with pytest.raises(UnsupportedModelError, match=name):
            keras_to_onnx(model, opset=17, input_name="image", output_name="logits")
        proto = to_onnx(model)
        assert proto.producer_name != "privadx"
        session = ort.InferenceSession(
            proto.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        x = np.random.default_rng(0).normal(0, 1, (3, 20, 20, 1)).astype(np.float32)
        (out,) = session.run(None, {session.get_inputs()[0].name: x})
        assert np.max(np.abs(out - model(x, training=False).numpy())) <= 1e-5


def test_onnx_evaluation_gives_the_keras_metrics(trained) -> None:
    """The gateway and the simulation score a round's model with ONNX Runtime: the same
    threshold and test metrics as Keras on the real validation and test splits."""
    from models.evaluate import OnnxLogits, choose_threshold, evaluate_split, fast_scorer

    model, ds, _ = trained
    pre = PreprocessSpec()
    scorer = fast_scorer(model)
    assert isinstance(scorer, OnnxLogits)
    diff = np.max(np.abs(predict_logits(scorer, ds.test.images, pre) -
                         predict_logits(model, ds.test.images, pre)))  # fmt: skip
    assert diff <= 1e-4
    results = []
    for m in (model, scorer):
        threshold = choose_threshold(m, ds.val, pre, 1)
        results.append(evaluate_split(m, ds.test, pre, positive_class=1, threshold=threshold))
    assert results[1]["threshold"] == pytest.approx(results[0]["threshold"], abs=1e-5)
    for key in ("accuracy", "auc", "sensitivity", "specificity"):
        assert results[1][key] == pytest.approx(results[0][key], abs=1e-3), key
    # The scorer holds the weights the model had when it was made (the gateway's Keras model
    # takes the next round's weights while the previous round's are being evaluated).
    first = predict_logits(scorer, ds.test.images[:8], pre)
    before = get_weights(model)
    set_weights(model, {k: np.zeros_like(v) for k, v in before.items()})
    try:
        np.testing.assert_array_equal(predict_logits(scorer, ds.test.images[:8], pre), first)
        zeroed = predict_logits(fast_scorer(model), ds.test.images[:8], pre)
        np.testing.assert_allclose(zeroed, 0.0, atol=1e-6)
        assert np.max(np.abs(first)) > 0.1
    finally:
        set_weights(model, before)


def test_models_the_direct_writer_refuses_are_scored_with_keras() -> None:
    from models.evaluate import fast_scorer

    layers = tf.keras.layers
    inputs = tf.keras.Input((20, 20, 1), name="image")
    x = layers.BatchNormalization(name="bn")(layers.Conv2D(4, 3, name="conv")(inputs))
    model = tf.keras.Model(inputs, layers.Dense(2)(layers.GlobalAveragePooling2D()(x)))
    assert fast_scorer(model) is model


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = (np.argsort(np.argsort(v.ravel())).astype(np.float64) for v in (a, b))
    return float(np.corrcoef(ra, rb)[0, 1])


def test_heat_maps_depend_on_the_learned_weights(trained, tmp_path: Path) -> None:
    """Adebayo et al. (2018) model-randomisation check: the maps of the trained model and of
    the same architecture with freshly randomised weights, on the same 64 real test images,
    have a mean Spearman rank correlation (per image, of the predicted class's evidence
    map) below 0.5; the trained model's maps are reproducible (correlation 1 with
    themselves from a second session)."""
    from edge.heatmap import evidence_map

    _, ds, folder = trained
    images = ds.test.images[:64]
    trained_onnx = OnnxClassifier(folder / "model.onnx")
    assert trained_onnx.has_class_maps
    random_model = build_model(ModelSpec(), seed=123)
    _randomize_normalization(random_model, seed=7)
    meta = load_weights(folder / "weights.npz")[1]
    export_onnx(random_model, meta, tmp_path / "random.onnx")
    random_onnx = OnnxClassifier(tmp_path / "random.onnx")

    def maps(clf: OnnxClassifier) -> list[np.ndarray]:
        logits, cams = clf.logits_and_maps(images)
        assert cams is not None
        return [evidence_map(c, int(k)) for c, k in zip(cams, logits.argmax(axis=1), strict=True)]

    ours, again, theirs = (
        maps(trained_onnx),
        maps(OnnxClassifier(folder / "model.onnx")),
        maps(random_onnx),
    )
    assert all(np.array_equal(a, b) for a, b in zip(ours, again, strict=True))
    rho = [_spearman(a, b) for a, b in zip(ours, theirs, strict=True) if a.std() and b.std()]
    assert len(rho) >= 48
    print(f"trained vs randomised maps: mean Spearman {np.mean(rho):.3f} over {len(rho)} images")
    assert np.mean(rho) < 0.5


def test_a_model_exported_without_maps_still_diagnoses(trained, tmp_path: Path) -> None:
    model, ds, folder = trained
    meta = load_weights(folder / "weights.npz")[1]
    export_onnx(model, meta, tmp_path / "plain.onnx", class_maps=False)
    plain, full = OnnxClassifier(tmp_path / "plain.onnx"), OnnxClassifier(folder / "model.onnx")
    assert not plain.has_class_maps and full.has_class_maps
    images = ds.test.images[:16]
    logits, maps = plain.logits_and_maps(images)
    assert maps is None
    np.testing.assert_allclose(logits, full.logits(images), atol=1e-5)
    Image.fromarray(images[0].squeeze()).save(tmp_path / "x.png")
    (result,) = diagnose(plain, [tmp_path / "x.png"])
    assert result.ok and result.predicted in ds.class_names
