"""Local training and held-out scoring in a child process: the edge agent's low-memory mode.

TensorFlow, once imported, keeps a few hundred megabytes in the agent's process for as long
as it runs (see ``docs/devices.md``). With ``--low-memory`` the agent never imports it: each
round's training and each held-out scoring run ``python -m edge.keras_worker`` in a fresh
child process, which exits when done; between rounds the agent holds what its MQTT side
needs. The cost is TensorFlow's start-up and the training step's tracing in every round.

The child computes exactly what the agent would have computed itself: the same model
architecture, the same :func:`models.training.train_weights` with the same seed. Inputs and
outputs are files in a private temporary folder: the weights as a PrivaDx weights file, the
images as ``.npz`` arrays and the settings as JSON; no pickle.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from privadx.common.data.arrays import LabeledImages
from privadx.common.data.local import load_site_npz, save_site_npz
from privadx.common.errors import ModelError, PrivadxError
from privadx.common.model_info import ModelInfo
from privadx.common.weights_io import load_weights, save_weights

JOB = "job.json"
WEIGHTS_IN, WEIGHTS_OUT, IMAGES, LOGITS = "weights.npz", "trained.npz", "images.npz", "logits.npy"


def train_in_child(
    info: ModelInfo,
    weights: dict[str, np.ndarray],
    data: LabeledImages,
    settings: dict[str, Any],
    *,
    seed: int,
    threads: int,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """:func:`models.training.train_weights` of ``weights`` on ``data``, in a child process.

    ``settings`` is :meth:`models.training.LocalTraining.to_dict`'s form.

    Raises:
        ModelError: The child failed (its last error line is in the message).
    """
    with tempfile.TemporaryDirectory(prefix="privadx-train-") as folder:
        work = Path(folder)
        _write_inputs(work, "train", info, weights, data, threads, settings=settings, seed=seed)
        _run(work)
        trained, meta = load_weights(work / WEIGHTS_OUT)
        return trained, dict(meta.get("metrics", {}))


def score_in_child(
    info: ModelInfo, weights: dict[str, np.ndarray], held_out: LabeledImages, *, threads: int
) -> np.ndarray:
    """Logits of ``weights`` on ``held_out`` (:func:`edge.evaluation.score_held_out`), in a child.

    Raises:
        ModelError: The child failed.
    """
    with tempfile.TemporaryDirectory(prefix="privadx-score-") as folder:
        work = Path(folder)
        _write_inputs(work, "score", info, weights, held_out, threads)
        _run(work)
        return np.load(work / LOGITS, allow_pickle=False)


def _write_inputs(
    work: Path,
    job: str,
    info: ModelInfo,
    weights: dict[str, np.ndarray],
    data: LabeledImages,
    threads: int,
    **extra: Any,
) -> None:
    save_weights(work / WEIGHTS_IN, weights, {})
    save_site_npz(work / IMAGES, data)
    spec = {"job": job, "info": info.to_meta(), "class_names": list(data.class_names),
            "threads": threads, **extra}  # fmt: skip
    (work / JOB).write_text(json.dumps(spec), encoding="utf-8")


def _run(work: Path) -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    proc = subprocess.run(
        [sys.executable, "-m", "edge.keras_worker", str(work)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit status {proc.returncode}"
        raise ModelError(f"local training process failed: {last}")


def _child(work: Path) -> None:
    """Run the job in ``work`` (this process imports TensorFlow and then exits)."""
    from edge.memory import release_library_pages
    from models.architectures import build_model
    from privadx.common.deps import require

    job = json.loads((work / JOB).read_text(encoding="utf-8"))
    tf = require("tensorflow")
    if int(job["threads"]) > 0:  # 0: TensorFlow's default (one per core)
        tf.config.threading.set_intra_op_parallelism_threads(int(job["threads"]))
        tf.config.threading.set_inter_op_parallelism_threads(int(job["threads"]))
    info = ModelInfo.from_meta(job["info"])
    weights, _ = load_weights(work / WEIGHTS_IN)
    data = load_site_npz(work / IMAGES, tuple(job["class_names"]))
    keras = build_model(info.model_spec)
    release_library_pages()  # what TensorFlow's import touched and training does not read
    if job["job"] == "train":
        from models.settings import LocalTraining
        from models.training import train_weights

        settings = LocalTraining.from_dict(job["settings"])
        trained, metrics = train_weights(
            keras, weights, data, info.preprocess, settings, seed=int(job["seed"])
        )
        save_weights(work / WEIGHTS_OUT, trained, {"metrics": metrics})
    else:
        from edge.evaluation import score_held_out

        np.save(work / LOGITS, score_held_out(keras, weights, data, info.preprocess))


def main(argv: list[str] | None = None) -> int:
    """``python -m edge.keras_worker FOLDER``: run the job the agent wrote there."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m edge.keras_worker FOLDER", file=sys.stderr)
        return 2
    try:
        _child(Path(args[0]))
    except PrivadxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (OSError, KeyError, ValueError) as exc:
        print(f"error: malformed job in {args[0]}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
