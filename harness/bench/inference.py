"""Benchmark sections on a trained model: ONNX Runtime against Keras, and diagnose's cold start."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness.bench.timing import best_of


def inference(dataset: str, work: Path) -> dict[str, Any]:
    """ONNX Runtime fp32 / int8 vs Keras per image, batch 1 and 32, on real test images."""
    import tensorflow as tf

    from edge.onnx_model import OnnxClassifier
    from privadx.common.data.medmnist import load_npz, resolve_dataset
    from privadx.common.preprocess import to_model_input

    weights = _trained_weights(dataset, work)
    model_path, int8_path = work / "model.onnx", work / "model.int8.onnx"
    subprocess.run(
        [sys.executable, "-m", "privadx", "export", str(weights), "--out", str(model_path),
         "--int8", "--verify-data", dataset],
        check=True, capture_output=True,
    )  # fmt: skip
    from models.rebuild import model_from_weights
    from privadx.common.weights_io import load_weights

    arrays, meta = load_weights(weights)
    keras_model, preprocess = model_from_weights(arrays, meta)
    test = load_npz(resolve_dataset(dataset, None)).test
    tf2onnx_path = _tf2onnx_export(keras_model, model_path, work / "model.tf2onnx.onnx")
    fp32, int8 = OnnxClassifier(model_path), OnnxClassifier(int8_path)
    via_tf2onnx = OnnxClassifier(tf2onnx_path)
    serve = tf.function(lambda x: keras_model(x, training=False))
    out: dict[str, Any] = {"threads": fp32.session.get_session_options().intra_op_num_threads}
    for batch in (1, 32):
        out[f"batch_{batch}"] = _time_batch(
            test.images[:batch], to_model_input(test.images[:batch], preprocess), fp32, int8,
            serve, keras_model, via_tf2onnx,
        )  # fmt: skip
    out["fp32_bytes"] = model_path.stat().st_size
    out["int8_bytes"] = int8_path.stat().st_size
    return out


def _tf2onnx_export(keras_model: Any, exported: Path, out: Path) -> Path:
    """The same weights converted by tf2onnx (what export wrote before the direct graph).

    It gets the exported file's metadata, so that OnnxClassifier loads it.
    """
    import onnx

    from models.onnx_export import tf2onnx_graph

    proto = tf2onnx_graph(keras_model)
    proto.metadata_props.extend(onnx.load(exported).metadata_props)
    out.write_bytes(proto.SerializeToString())
    return out


def _time_batch(
    images: np.ndarray,
    x: np.ndarray,
    fp32: Any,
    int8: Any,
    serve: Any,
    keras_model: Any,
    via_tf2onnx: Any,
) -> dict[str, float]:
    """Seconds per image of each runtime on one batch (best of many calls)."""
    batch = len(images)
    serve(x)  # trace once
    n = 200 if batch == 1 else 30
    per = {
        "onnx_fp32": best_of(lambda: fp32.logits(images), n) / batch,
        "onnx_fp32_tf2onnx": best_of(lambda: via_tf2onnx.logits(images), n) / batch,
        "onnx_int8": best_of(lambda: int8.logits(images), n) / batch,
        "keras_tf_function": best_of(lambda: serve(x), n) / batch,
        "keras_predict": best_of(lambda: keras_model.predict(x, verbose=0), n // 4) / batch,
    }
    return {
        **{f"{k}_s_per_image": v for k, v in per.items()},
        "onnx_vs_tf_function": per["onnx_fp32"] / per["keras_tf_function"],
        "onnx_vs_predict": per["onnx_fp32"] / per["keras_predict"],
        "int8_vs_fp32": per["onnx_int8"] / per["onnx_fp32"],
        "direct_vs_tf2onnx": per["onnx_fp32"] / per["onnx_fp32_tf2onnx"],
    }


def _trained_weights(dataset: str, work: Path) -> Path:
    """A briefly trained CNN (2-site simulation, 2 rounds) to export and time."""
    out = work / "sim"
    subprocess.run(
        [sys.executable, "-m", "privadx", "simulate", "--dataset", dataset, "--sites", "2",
         "--partition", "iid", "--rounds", "2", "--local-epochs", "1", "--no-export",
         "--out", str(out)],
        check=True, capture_output=True,
    )  # fmt: skip
    return out / "weights.npz"


# --- cold start --------------------------------------------------------------------------
TF_SCRIPT = """
import sys, numpy as np
from PIL import Image
import tensorflow as tf
model = tf.keras.models.load_model(sys.argv[1], compile=False)
x = np.asarray(Image.open(sys.argv[2]), np.float32)[None, :, :, None] / 255.0
print(int(np.argmax(model(x, training=False).numpy(), axis=1)[0]))
"""


def cold_start(dataset: str, work: Path) -> dict[str, Any]:
    """Process start to exit: ``privadx diagnose`` vs a minimal TensorFlow script."""
    from PIL import Image

    from models.rebuild import model_from_weights
    from privadx.common.data.medmnist import load_npz, resolve_dataset
    from privadx.common.weights_io import load_weights

    weights = work / "sim" / "weights.npz"
    if not weights.exists():
        _trained_weights(dataset, work)
    model_path = work / "model.onnx"
    if not model_path.exists():
        subprocess.run(
            [sys.executable, "-m", "privadx", "export", str(weights), "--out", str(model_path),
             "--verify-data", dataset],
            check=True, capture_output=True,
        )  # fmt: skip
    arrays, meta = load_weights(weights)
    keras_model, _ = model_from_weights(arrays, meta)
    keras_path = work / "model.keras"
    keras_model.save(keras_path)
    image = work / "scan.png"
    first = load_npz(resolve_dataset(dataset, None)).test.images[0]
    Image.fromarray(first[..., 0] if first.shape[-1] == 1 else first).save(image)
    script = work / "tf_diagnose.py"
    script.write_text(TF_SCRIPT)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    privadx = [sys.executable, "-m", "privadx", "diagnose", str(model_path), str(image),
               "--allow-unsigned"]  # fmt: skip
    tf_cmd = [sys.executable, str(script), str(keras_path), str(image)]
    runs: dict[str, list[float]] = {"privadx_diagnose": [], "tensorflow_script": []}
    for _ in range(5):  # interleaved, so drift affects both alike
        for name, cmd in (("privadx_diagnose", privadx), ("tensorflow_script", tf_cmd)):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=env)
            runs[name].append(time.perf_counter() - t0)
    d, t = statistics.median(runs["privadx_diagnose"]), statistics.median(runs["tensorflow_script"])
    return {"privadx_diagnose_s": d, "tensorflow_script_s": t, "ratio": d / t, "runs": runs}
