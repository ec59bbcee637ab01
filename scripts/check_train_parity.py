r"""Does local training under another TensorFlow compute the update TensorFlow 2.14 computes?

TensorFlow 2.14 (the version TFF 0.87 and so the simulation train with) has no wheel for
Python 3.12 or 3.13. The cleanest route there is a newer TensorFlow with the ``tf-keras``
package, which keeps the Keras 2 API the project uses (``TF_USE_LEGACY_KERAS=1``). This
script measures whether that route holds the deployment-vs-simulation parity bound (1e-5 on
every weight after one round; ``tests/integration/test_federation_mqtt.py``): it trains the
same start weights on the same 150 PneumoniaMNIST images with the same seed, once in this
environment and once under ``--other-python`` (an interpreter whose environment has the
other TensorFlow, ``tf-keras`` and this project installed), and compares the weights.

Usage::

    uv run python scripts/check_train_parity.py --other-python /path/to/venv/bin/python \\
        [--json runs/train-parity.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PARITY = 1e-5
SETTINGS = {
    # The parity test's settings: one round of plain SGD at a stable learning rate.
    "parity": {"local_epochs": 1, "batch_size": 32, "augment": False, "shuffle": False,
               "optimizer": {"name": "sgd", "learning_rate": 0.01}},
    # The defaults of a real run (Adam, augmentation, shuffling, dropout masks).
    "default": {},
}  # fmt: skip


def _site() -> object:
    from privadx.common.data.medmnist import load_npz, resolve_dataset

    return load_npz(resolve_dataset("pneumoniamnist")).train.subset(list(range(150)))


def save_start(path: Path) -> None:
    """The start weights (this TensorFlow's initialisation), for both sides to train from."""
    from models.architectures import build_model
    from models.spec import ModelSpec
    from models.weights import get_weights
    from privadx.common.weights_io import save_weights

    save_weights(path, get_weights(build_model(ModelSpec(dropout=0.3), seed=0)), {})


def train(start: Path, out: Path, settings: str) -> None:
    """Train ``start`` once with ``settings`` and save the result and the TensorFlow version."""
    from models.architectures import build_model
    from models.settings import LocalTraining
    from models.spec import ModelSpec
    from models.training import train_weights
    from privadx.common.deps import require
    from privadx.common.preprocess import PreprocessSpec
    from privadx.common.weights_io import load_weights, save_weights

    tf = require("tensorflow")
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    weights, _ = load_weights(start)
    local = LocalTraining.from_dict({**LocalTraining().to_dict(), **SETTINGS[settings]})
    # Seeded: tf-keras 2.18 on Python 3.12 draws unseeded initialiser seeds with
    # random.randint(1, 1e9), a TypeError there. The start weights replace these anyway.
    model = build_model(ModelSpec(dropout=0.3), seed=1)
    trained, _ = train_weights(model, weights, _site(), PreprocessSpec(), local, seed=7)  # type: ignore[arg-type]
    save_weights(out, trained, {"tensorflow": tf.__version__, "python": sys.version.split()[0]})


def _worker(python: str, *args: str) -> None:
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run([python, __file__, *args], check=True, env=env)


def main(argv: list[str] | None = None) -> int:
    """Train on both sides for each settings and print the largest weight difference."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--other-python", help="interpreter of the environment to compare")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--save-start", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--train", nargs=3, metavar=("START", "OUT", "SETTINGS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.save_start:
        save_start(args.save_start)
        return 0
    if args.train:
        train(Path(args.train[0]), Path(args.train[1]), args.train[2])
        return 0
    if not args.other_python:
        p.error("--other-python is required")
    import numpy as np

    from privadx.common.weights_io import load_weights

    results = {}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        _worker(sys.executable, "--save-start", str(work / "start.npz"))
        for name in SETTINGS:
            for side, python in (("here", sys.executable), ("other", args.other_python)):
                _worker(
                    python,
                    "--train",
                    str(work / "start.npz"),
                    str(work / f"{side}-{name}.npz"),
                    name,
                )
            (a, meta_a), (b, meta_b) = (
                load_weights(work / f"{s}-{name}.npz") for s in ("here", "other")
            )
            start, _ = load_weights(work / "start.npz")
            diff = max(float(np.max(np.abs(a[k] - b[k]))) for k in a)
            step = max(float(np.max(np.abs(a[k] - start[k]))) for k in a)
            results[name] = {"max_abs_diff": diff, "largest_step": step,
                             "within_parity": diff <= PARITY, "here": meta_a,
                             "other": meta_b}  # fmt: skip
            print(f"{name:8}: TF {meta_a['tensorflow']} (Python {meta_a['python']}) vs TF "
                  f"{meta_b['tensorflow']} (Python {meta_b['python']}): max |weight diff| "
                  f"{diff:.2e} (largest step {step:.2e}; parity bound {PARITY:.0e}: "
                  f"{'held' if diff <= PARITY else 'NOT held'})")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
