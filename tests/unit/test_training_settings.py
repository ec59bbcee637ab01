"""What a round asks of a site: epochs scaled up to a minimum of local steps, on the wire."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from models.augment import Augmentation
from models.optim import LrSchedule, OptimizerName, OptimizerSpec
from models.settings import MAX_LOCAL_EPOCHS, LocalTraining, class_log_prior
from privadx.common.errors import InputError


def test_epochs_are_local_epochs_without_a_minimum() -> None:
    settings = LocalTraining(local_epochs=2, batch_size=32)
    assert [settings.epochs_for(n) for n in (0, 1, 40, 5000)] == [2, 2, 2, 2]


@pytest.mark.parametrize(
    ("examples", "epochs"),
    [
        (44, 10),  # 2 batches an epoch (32 + 12): 10 epochs make 20 steps
        (32, 20),  # one batch an epoch
        (150, 4),  # 5 batches: 4 epochs
        (320, 2),  # 10 batches: local_epochs already make 20 steps
        (5000, 2),  # a large site trains its local epochs
        (1, 20),
        (0, 2),  # no images: nothing to scale
    ],
)
def test_small_sites_train_whole_epochs_up_to_the_minimum(examples: int, epochs: int) -> None:
    settings = LocalTraining(local_epochs=2, batch_size=32, min_local_steps=20)
    assert settings.epochs_for(examples) == epochs
    batches = -(-examples // 32)
    if examples:
        assert batches * epochs >= 20  # enough steps, and no whole epoch more than needed:
        assert epochs == 2 or batches * (epochs - 1) < 20


def test_the_epochs_are_capped() -> None:
    settings = LocalTraining(local_epochs=1, batch_size=32, min_local_steps=10_000)
    assert settings.epochs_for(3) == MAX_LOCAL_EPOCHS


def test_the_minimum_travels_in_the_announcement() -> None:
    settings = LocalTraining(local_epochs=3, batch_size=16, min_local_steps=25)
    assert LocalTraining.from_dict(settings.to_dict()) == settings
    older = settings.to_dict()
    del older["min_local_steps"]  # an announcement from a gateway before the setting
    assert LocalTraining.from_dict(older).min_local_steps == 0


def test_the_proximal_strength_travels_in_the_announcement() -> None:
    settings = LocalTraining(proximal_mu=0.01)
    assert LocalTraining.from_dict(settings.to_dict()) == settings
    older = settings.to_dict()
    del older["proximal_mu"]  # an announcement from a gateway before FedProx: plain FedAvg
    assert LocalTraining.from_dict(older).proximal_mu == 0.0


def test_the_logit_adjustment_travels_in_the_announcement() -> None:
    settings = LocalTraining(logit_adjust=1.0)
    assert LocalTraining.from_dict(settings.to_dict()) == settings
    older = settings.to_dict()
    del older["logit_adjust"]  # an announcement from a gateway before the setting: no offsets
    assert LocalTraining.from_dict(older).logit_adjust == 0.0


def test_the_weight_decay_travels_in_the_announcement_and_survives_the_schedule() -> None:
    adam = OptimizerSpec(name=OptimizerName.ADAM, learning_rate=1e-3, weight_decay=0.05)
    settings = LocalTraining(optimizer=adam)
    assert LocalTraining.from_dict(settings.to_dict()) == settings
    older = settings.to_dict()
    del older["optimizer"]["weight_decay"]  # from a gateway before the setting: plain Adam
    assert LocalTraining.from_dict(older).optimizer.weight_decay == 0.0
    late = settings.for_round(LrSchedule.COSINE, 30, 30).optimizer
    assert late.weight_decay == 0.05 and late.learning_rate < 1e-4


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"weight_decay": -0.1}, "weight decay must lie"),
        ({"weight_decay": float("nan")}, "weight decay must lie"),
        ({"weight_decay": 10.5}, "weight decay must lie"),
        ({"weight_decay": 0.1, "name": OptimizerName.SGD}, "needs the adam optimizer"),
    ],
)
def test_impossible_weight_decay_is_refused(fields: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        OptimizerSpec(**{"name": OptimizerName.ADAM, **fields})
    wire = {"learning_rate": 1e-3, **fields, "name": str(fields.get("name", "adam"))}
    with pytest.raises(InputError, match=message):
        OptimizerSpec.from_dict(wire)


@pytest.mark.parametrize("level", list(Augmentation))
def test_the_augmentation_travels_in_the_announcement(level: Augmentation) -> None:
    settings = LocalTraining(augmentation=level)
    wire = settings.to_dict()
    assert LocalTraining.from_dict(wire) == settings
    assert wire["augment"] is (level is not Augmentation.NONE)  # what an older device reads


@pytest.mark.parametrize(
    ("augment", "level"), [(True, Augmentation.SHIFT), (False, Augmentation.NONE), (None, None)]
)
def test_an_announcement_before_the_levels_means_the_shift_or_none(
    augment: bool | None, level: Augmentation | None
) -> None:
    older = LocalTraining().to_dict()
    del older["augmentation"]
    if augment is None:
        del older["augment"]  # neither field: the protocol's default, the shift
    else:
        older["augment"] = augment
    assert LocalTraining.from_dict(older).augmentation is (level or Augmentation.SHIFT)


def test_the_class_prior_is_add_one_smoothed_and_finite_for_absent_classes() -> None:
    prior = class_log_prior(np.array([1, 1, 1, 0, 1, 1]), 3)
    assert prior.dtype == np.float32 and prior.shape == (3,)
    np.testing.assert_allclose(np.exp(prior), [2 / 9, 6 / 9, 1 / 9], rtol=1e-6)
    assert np.isclose(np.exp(prior).sum(), 1.0)
    # a site without images: the uniform prior (every class counts as equally rare)
    np.testing.assert_allclose(np.exp(class_log_prior(np.array([], np.int64), 4)), 0.25)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("min_local_steps", -1, "minimum local steps"),
        ("min_local_steps", 10**6, "minimum local steps"),
        ("min_local_steps", "many", "malformed"),
        ("local_epochs", 0, "local epochs"),
        ("local_epochs", 101, "local epochs"),
        ("batch_size", 5000, "batch size"),
        ("proximal_mu", -0.1, "proximal mu"),
        ("proximal_mu", float("nan"), "proximal mu"),
        ("proximal_mu", 1e3, "proximal mu"),
        ("proximal_mu", "strong", "malformed"),
        ("logit_adjust", -1.0, "logit adjustment"),
        ("logit_adjust", float("nan"), "logit adjustment"),
        ("logit_adjust", 11.0, "logit adjustment"),
        ("augmentation", "wild", "malformed"),
        ("augmentation", None, "malformed"),
        ("augment", "yes", "augment must be true or false"),
        ("augment", False, "contradicts"),  # the default's level, the shift, asks for some
    ],
)
def test_bad_settings_are_refused_with_a_reason(field: str, value: object, message: str) -> None:
    data = {**LocalTraining().to_dict(), field: value}
    with pytest.raises(InputError, match=message):
        LocalTraining.from_dict(data)


def test_the_cosine_schedule_decays_from_the_full_rate() -> None:
    rounds = 20
    factors = [LrSchedule.COSINE.factor(r, rounds) for r in range(1, rounds + 1)]
    assert factors[0] == 1.0
    assert factors[10] == pytest.approx(0.5)
    assert all(a > b for a, b in itertools.pairwise(factors))
    assert 0 < factors[-1] < 0.01
    assert [LrSchedule.CONSTANT.factor(r, rounds) for r in (1, 20)] == [1.0, 1.0]


def test_a_round_asks_its_scheduled_rate_and_nothing_else_changes() -> None:
    base = LocalTraining(min_local_steps=20)
    later = base.for_round(LrSchedule.COSINE, 11, 20)
    assert later.optimizer.learning_rate == pytest.approx(0.5 * base.optimizer.learning_rate)
    assert later == replace(base, optimizer=later.optimizer)
    assert base.for_round(LrSchedule.CONSTANT, 11, 20) == base
