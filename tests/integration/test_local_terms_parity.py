"""FedProx, logit adjustment, weight decay: the simulation (TFF) and the edge agent take one step.

One site of real BreastMNIST images trains one round from the same start weights: in TFF's
FedAvg with :mod:`tff_core.proximal`'s client optimizer (or the logit offsets its batches
carry), and with the edge agent's :func:`models.training.train_weights`. The two must agree
at the deployment-vs-simulation bound; each term must matter at that bound and act as it
should: the proximal term pulls the update toward the global model (TFF's own
``build_weighted_fed_prox`` pushes it away), logit adjustment keeps the site's class balance
out of the model, weight decay (TFF's ``build_adamw``, Keras's Adam with ``weight_decay``)
shrinks the weights.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from models.augment import Augmentation
from models.optim import OptimizerName, OptimizerSpec
from models.settings import LocalTraining
from models.spec import ModelSpec
from privadx.common.data.arrays import LabeledImages
from privadx.common.data.medmnist import load_npz
from privadx.common.preprocess import PreprocessSpec

pytest.importorskip("tensorflow_federated")

PARITY = 1e-5  # the bound of tests/integration/test_federation_mqtt.py
MU = 1.0
# The parity settings of the federation test (stable plain SGD) over 64 images for 3 epochs:
# 6 steps, so the weights leave the anchor and the term has something to pull. Measured:
# edge and TFF agree to 1.5e-8 here, the term moves the update by 2.5e-4. Longer runs of
# these images amplify float rounding, with or without the term (128 images x 2 epochs:
# 3.5e-7 without it, 2.2e-5 at mu 10), so more steps would test chaos, not the update rule.
TRAINING = LocalTraining(
    local_epochs=3,
    batch_size=32,
    optimizer=OptimizerSpec(name=OptimizerName.SGD, learning_rate=0.01),
    augmentation=Augmentation.NONE,
    shuffle=False,
    proximal_mu=MU,
)
SPEC = ModelSpec(dropout=0.0)
PRE = PreprocessSpec()


@pytest.fixture(scope="module")
def site(breast_npz: Path) -> LabeledImages:
    return load_npz(breast_npz).train.subset(np.arange(64))


def _tff_round(site: LabeledImages, training: LocalTraining) -> tuple[list, list]:
    """Start and end weights of one TFF FedAvg round of ``site`` alone (server SGD 1.0)."""
    from tff_core.fedavg import build_fedavg, client_dataset
    from tff_core.runtime import tff_runtime

    with tff_runtime():
        process = build_fedavg(
            SPEC,
            PRE,
            client_optimizer=training.optimizer,
            server_optimizer=OptimizerSpec(name=OptimizerName.SGD, learning_rate=1.0),
            seed=0,
            proximal_mu=training.proximal_mu,
        )
        state = process.initialize()
        start = [np.asarray(w) for w in process.get_model_weights(state).trainable]
        data = [client_dataset(site, PRE, training, seed=0, num_classes=2)]
        state = process.next(state, data).state
        end = [np.asarray(w) for w in process.get_model_weights(state).trainable]
    return start, end


def _edge_round(site: LabeledImages, start: list, training: LocalTraining) -> list:
    """The edge agent's local training of ``start`` with ``training``."""
    from models.architectures import build_model
    from models.training import train_weights
    from models.weights import weight_names

    model = build_model(SPEC, seed=0)
    weights = dict(zip(weight_names(model), start, strict=True))
    trained, _ = train_weights(model, weights, site, PRE, training, seed=0)
    return list(trained.values())


def _max_diff(a: list, b: list) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


def _norm(start: list, end: list) -> float:
    return float(np.sqrt(sum(np.sum((e - s) ** 2) for s, e in zip(start, end, strict=True))))


def _parity(
    site: LabeledImages, training: LocalTraining, without: LocalTraining, term: str
) -> tuple[list, list, list]:
    """Start, TFF and edge-without-the-term weights; asserts the edge and TFF agree.

    Also asserts the term matters at the parity bound: the edge's update without it
    (``without``) lies far outside.
    """
    start, simulated = _tff_round(site, training)
    edge = _edge_round(site, start, training)
    diff = _max_diff(edge, simulated)
    assert diff <= PARITY, f"edge vs TFF with {term}: max |difference| {diff:.2e}"
    plain = _edge_round(site, start, without)
    off = _max_diff(plain, simulated)
    print(f"{term}: edge vs TFF {diff:.2e}; vs without it {off:.2e}")
    assert off > 5 * PARITY
    return start, simulated, plain


@pytest.mark.slow
def test_edge_and_simulation_take_the_same_proximal_steps(site: LabeledImages) -> None:
    without = replace(TRAINING, proximal_mu=0.0)
    start, simulated, plain = _parity(site, TRAINING, without, f"FedProx mu {MU}")
    # It pulls toward the global model: the stronger, the shorter the update.
    strong = _edge_round(site, start, replace(TRAINING, proximal_mu=10.0))
    norms = [_norm(start, w) for w in (plain, simulated, strong)]
    assert norms[0] > norms[1] > norms[2] > 0, norms


def _majority_share(site: LabeledImages, weights: list) -> float:
    """Mean probability ``weights``' model gives the site's majority class on its images."""
    from models.architectures import build_model
    from models.weights import set_weights, weight_names
    from privadx.common.metrics import softmax
    from privadx.common.preprocess import to_model_input

    model = build_model(SPEC, seed=0)
    set_weights(model, dict(zip(weight_names(model), weights, strict=True)))
    logits = np.asarray(model(to_model_input(site.images, PRE), training=False))
    majority = int(np.argmax(np.bincount(site.labels)))
    return float(softmax(logits.astype(np.float64))[:, majority].mean())


@pytest.mark.slow
def test_edge_and_simulation_take_the_same_logit_adjusted_steps(site: LabeledImages) -> None:
    adjusted = replace(TRAINING, proximal_mu=0.0, logit_adjust=1.0)
    without = replace(adjusted, logit_adjust=0.0)
    _, simulated, plain = _parity(site, adjusted, without, "logit adjustment 1")
    # The site's skew (about 3:1 here) is taught less: the adjusted model leans less
    # toward the site's majority class than the plainly trained one.
    counts = np.bincount(site.labels)
    assert counts.max() >= 2 * counts.min(), counts
    assert _majority_share(site, simulated) < _majority_share(site, plain)


@pytest.mark.slow
def test_edge_and_simulation_take_the_same_weight_decayed_steps(site: LabeledImages) -> None:
    adam = OptimizerSpec(name=OptimizerName.ADAM, learning_rate=1e-3, weight_decay=1.0)
    decayed = replace(TRAINING, proximal_mu=0.0, optimizer=adam)
    without = replace(decayed, optimizer=replace(adam, weight_decay=0.0))
    start, simulated, plain = _parity(site, decayed, without, "weight decay 1")
    # Every step shrinks the weights: the decayed model is the smaller one.
    sizes = [_norm([np.zeros_like(w) for w in start], w) for w in (plain, simulated)]
    assert sizes[1] < sizes[0], sizes
