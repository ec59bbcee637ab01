"""Local training on real images: the reused trainer gives a fresh trainer's update exactly."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from models.architectures import build_model
from models.augment import Augmentation
from models.optim import OptimizerName, OptimizerSpec
from models.settings import LocalTraining
from models.spec import ModelSpec
from models.training import _TRAINERS, make_client_dataset, train_locally, train_weights
from models.weights import get_weights, set_weights
from privadx.common.data.medmnist import load_npz
from privadx.common.errors import ModelError
from privadx.common.preprocess import PreprocessSpec, to_model_input

tf = pytest.importorskip("tensorflow")

ADAM = LocalTraining(local_epochs=1, batch_size=32)


@pytest.fixture(scope="module")
def site(pneumonia_npz: Path):
    """150 real PneumoniaMNIST training images (not a multiple of the batch size)."""
    return load_npz(pneumonia_npz).train.subset(list(range(150)))


def _train(model, start, site, settings: LocalTraining, seed: int) -> dict[str, np.ndarray]:
    set_weights(model, start)
    train_locally(model, site, PreprocessSpec(), settings, seed=seed)
    return get_weights(model)


def _equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_reused_trainer_gives_a_fresh_trainers_update(site) -> None:
    """With dropout, Adam's moments and augmentation all in play: training the same start
    with the same seed gives bit-identical weights whether the trainer is new or has trained
    other rounds (other seeds, other weights) before, and its step is traced once."""
    spec = ModelSpec(dropout=0.3)
    start = get_weights(build_model(spec, seed=0))
    model = build_model(spec, seed=1)
    first = _train(model, start, site, ADAM, seed=7)
    _train(model, first, site, ADAM, seed=8)  # the trainer's state moves on
    again = _train(model, start, site, ADAM, seed=7)
    fresh = _train(build_model(spec, seed=2), start, site, ADAM, seed=7)
    assert _equal(first, again)
    assert _equal(first, fresh)
    assert not _equal(first, start)
    assert _TRAINERS[model].step.experimental_get_tracing_count() == 1


def test_a_scheduled_rate_reaches_the_reused_trainer(site) -> None:
    """A gateway announces a new learning rate each round under a schedule: the kept
    trainer uses it (bit-identical to a fresh trainer at that rate), without retracing."""
    spec = ModelSpec(dropout=0.0)
    start = get_weights(build_model(spec, seed=0))
    model = build_model(spec, seed=1)
    slower = replace(ADAM, optimizer=replace(ADAM.optimizer, learning_rate=2e-4))
    full = _train(model, start, site, ADAM, seed=7)
    reduced = _train(model, start, site, slower, seed=7)
    fresh = _train(build_model(spec, seed=2), start, site, slower, seed=7)
    assert _equal(reduced, fresh)
    assert not _equal(reduced, full)
    assert _TRAINERS[model].step.experimental_get_tracing_count() == 1


def test_the_announced_augmentation_reaches_the_trainer(site) -> None:
    """A device trains with the level its announcement names: strong augmentation gives
    another update than the shift from the same start and seed, the same one every time."""
    spec = ModelSpec(dropout=0.0)
    start = get_weights(build_model(spec, seed=0))
    model = build_model(spec, seed=1)
    strong = LocalTraining.from_dict({**ADAM.to_dict(), "augmentation": "strong"})
    assert strong.augmentation is Augmentation.STRONG
    shifted = _train(model, start, site, ADAM, seed=7)
    first = _train(model, start, site, strong, seed=7)
    assert _equal(first, _train(build_model(spec, seed=2), start, site, strong, seed=7))
    assert not _equal(first, shifted)


@pytest.mark.slow
def test_dropout_masks_follow_the_seed(site) -> None:
    """Without shuffling and augmentation only dropout is random: another seed gives another
    update, dropout 0 gives the same update for any seed."""
    fixed = LocalTraining(
        local_epochs=1, batch_size=32, augmentation=Augmentation.NONE, shuffle=False
    )
    for dropout, differs in ((0.3, True), (0.0, False)):
        spec = ModelSpec(dropout=dropout)
        start = get_weights(build_model(spec, seed=0))
        model = build_model(spec)
        a = _train(model, start, site, fixed, seed=1)
        b = _train(model, start, site, fixed, seed=2)
        assert _equal(a, b) is not differs


@pytest.mark.slow
def test_new_settings_get_a_new_trainer(site) -> None:
    spec = ModelSpec(dropout=0.0)
    start = get_weights(build_model(spec, seed=0))
    sgd = LocalTraining(local_epochs=1, optimizer=OptimizerSpec(name=OptimizerName.SGD))
    model = build_model(spec)
    _train(model, start, site, ADAM, seed=3)
    switched = _train(model, start, site, sgd, seed=3)
    assert _TRAINERS[model].key[0].name is OptimizerName.SGD  # the rate is set per run
    assert _equal(switched, _train(build_model(spec), start, site, sgd, seed=3))


def test_random_layers_other_than_dropout_are_refused(site) -> None:
    layers = tf.keras.layers
    inputs = tf.keras.Input((28, 28, 1))
    x = layers.GaussianNoise(0.1, name="noise")(inputs)
    x = layers.GlobalAveragePooling2D()(x)
    model = tf.keras.Model(inputs, layers.Dense(2)(x))
    with pytest.raises(ModelError, match="noise"):
        train_locally(model, site, PreprocessSpec(), ADAM, seed=0)


def test_the_order_depends_on_the_seed_alone(site) -> None:
    """Each epoch is a fresh permutation of the site's images, drawn from the seed only:
    TensorFlow's process-wide seed (which the simulation sets) changes nothing."""

    def centre_pixels(seed: int) -> np.ndarray:
        """The centre pixel of every image in the order training sees them."""
        ds = make_client_dataset(
            site,
            PreprocessSpec(),
            batch_size=50,
            epochs=2,
            seed=seed,
            augmentation=Augmentation.NONE,
        )
        return np.concatenate([b["x"].numpy()[:, 14, 14, 0] for b in ds])

    tf.random.set_seed(1)
    a = centre_pixels(5)
    tf.random.set_seed(2)
    b = centre_pixels(5)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, centre_pixels(6))
    own = np.sort(to_model_input(site.images, PreprocessSpec())[:, 14, 14, 0])
    first, second = a[: len(site)], a[len(site) :]
    assert np.array_equal(np.sort(first), own) and np.array_equal(np.sort(second), own)
    assert not np.array_equal(first, second)


def test_training_from_weights_leaves_the_model_alone(site) -> None:
    """An edge agent trains the received weights directly: the same update as training the
    model in place, the model's own variables untouched; weights that do not fit refused."""
    spec = ModelSpec(dropout=0.3)
    start = get_weights(build_model(spec, seed=0))
    model = build_model(spec, seed=1)
    own = get_weights(model)
    trained, metrics = train_weights(model, start, site, PreprocessSpec(), ADAM, seed=7)
    assert _equal(get_weights(model), own)
    assert _equal(trained, _train(build_model(spec, seed=2), start, site, ADAM, seed=7))
    assert metrics["examples_seen"] == len(site)
    shuffled = dict(reversed(list(start.items())))
    with pytest.raises(ModelError, match="different order"):
        train_weights(model, shuffled, site, PreprocessSpec(), ADAM, seed=7)
    wrong = {**start, "logits/bias": np.zeros(3, np.float32)}
    with pytest.raises(ModelError, match="logits/bias"):
        train_weights(model, wrong, site, PreprocessSpec(), ADAM, seed=7)


@pytest.mark.slow
def test_the_low_memory_child_trains_and_scores_exactly_as_the_agent_would(site) -> None:
    """``edge.keras_worker`` (a fresh process per round) gives bit-identical trained weights
    and logits to training and scoring in the agent's own process with the same threads
    (here TensorFlow's default, as this process has: the thread count changes the order of
    float sums)."""
    from edge.evaluation import score_held_out
    from edge.keras_worker import score_in_child, train_in_child
    from privadx.common.model_info import ModelInfo

    spec = ModelSpec(dropout=0.3)
    info = ModelInfo(model_spec=spec, preprocess=PreprocessSpec(), class_names=site.class_names)
    start = get_weights(build_model(spec, seed=0))
    here, metrics = train_weights(build_model(spec), start, site, PreprocessSpec(), ADAM, seed=7)
    assert tf.config.threading.get_intra_op_parallelism_threads() == 0
    there, child_metrics = train_in_child(info, start, site, ADAM.to_dict(), seed=7, threads=0)
    assert list(there) == list(here) and _equal(here, there) and not _equal(here, start)
    timeless = {k: v for k, v in metrics.items() if "seconds" not in k}
    assert {k: child_metrics[k] for k in timeless} == timeless
    logits = score_held_out(build_model(spec), here, site, PreprocessSpec())
    np.testing.assert_array_equal(score_in_child(info, here, site, threads=0), logits)
    with pytest.raises(ModelError, match="local training process failed"):
        train_in_child(info, {"nope": np.zeros(3, np.float32)}, site, ADAM.to_dict(), seed=7,
                       threads=1)  # fmt: skip
