"""Check the direction of TFF's FedProx proximal term (why PrivaDx brings its own).

FedProx (Li et al., MLSys 2020) adds mu/2 ||w - w0||^2 to each site's loss, i.e. mu (w - w0)
to the gradient, so a larger mu keeps a site's update nearer the global model. TFF 0.87's
``build_weighted_fed_prox`` adds ``mu * (w0 - w)`` (``proximal_client_work.py``: the lambda
``x, y: mu * (y - x)`` over the current and the initial weights), so a larger mu pushes the
update away. This script trains one round of one PneumoniaMNIST site (150 images, 3 epochs,
SGD 0.05) with several mu and prints the update's L2 norm; it exits 1 while the norm grows
with mu (the sign is wrong), 0 once it shrinks. PrivaDx's ``--proximal-mu`` does not use
``build_weighted_fed_prox``: it wraps the client optimizer (``tff_core/proximal.py``), whose
pull ``tests/integration/test_local_terms_parity.py`` checks against the edge agent's.

Measured 2026-12-03 (TFF 0.87.0): 0.81 at mu = 0.001, 1.59 at mu = 1, 18.17 at mu = 5.

Usage: uv run python scripts/check_tff_fedprox.py [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def update_norm(site, mu: float) -> float:  # type: ignore[no-untyped-def]
    import tensorflow_federated as tff

    from models.augment import Augmentation
    from models.optim import OptimizerName, OptimizerSpec
    from models.settings import LocalTraining
    from models.spec import ModelSpec
    from privadx.common.preprocess import PreprocessSpec
    from tff_core.fedavg import build_tff_optimizer, client_dataset, tff_model_fn

    spec, pre = ModelSpec(dropout=0.0), PreprocessSpec()
    training = LocalTraining(
        local_epochs=3,
        optimizer=OptimizerSpec(name=OptimizerName.SGD, learning_rate=0.05),
        augmentation=Augmentation.NONE,
    )
    process = tff.learning.algorithms.build_weighted_fed_prox(
        tff_model_fn(spec, pre, 0),
        proximal_strength=mu,
        client_optimizer_fn=build_tff_optimizer(training.optimizer),
        server_optimizer_fn=build_tff_optimizer(
            OptimizerSpec(name=OptimizerName.SGD, learning_rate=1.0)
        ),
    )
    state = process.initialize()
    before = [np.asarray(w) for w in process.get_model_weights(state).trainable]
    output = process.next(state, [client_dataset(site, pre, training, seed=1, num_classes=2)])
    after = [np.asarray(w) for w in process.get_model_weights(output.state).trainable]
    return float(np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(before, after, strict=True))))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=None)
    args = p.parse_args()
    from privadx.common.data.medmnist import load_npz, resolve_dataset
    from tff_core.runtime import tff_runtime

    site = load_npz(resolve_dataset("pneumoniamnist", args.data_dir)).train.subset(np.arange(150))
    with tff_runtime():
        norms = {mu: update_norm(site, mu) for mu in (0.001, 1.0, 5.0)}
    for mu, norm in norms.items():
        print(f"mu {mu:g}: update L2 norm {norm:.4f}")
    wrong = norms[5.0] > norms[0.001]
    print("proximal term pushes the update away (wrong sign)" if wrong else "proximal term pulls")
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
