"""The training options: one definition for simulate and gateway, parsed to typed settings."""

from __future__ import annotations

import pytest

from models.augment import Augmentation
from models.optim import DEFAULT_LR_SCHEDULE, DEFAULT_SERVER_OPTIMIZER, LrSchedule, OptimizerName
from models.settings import DEFAULT_SIMULATION_ROUNDS, DEFAULT_TRAINING, LocalTraining
from privadx.cli import build_parser, main
from privadx.commands._training import local_training, server_optimizer

OPTIONS = [
    "--local-epochs",
    "3",
    "--min-local-steps",
    "25",
    "--client-lr",
    "0.002",
    "--server-momentum",
    "0.9",
    "--client-lr-schedule",
    "cosine",
    "--proximal-mu",
    "0.01",
    "--logit-adjust",
    "0.5",
    "--augment",
    "strong",
    "--weight-decay",
    "0.05",
]

GATEWAY = ["gateway", "--broker", "mqtt://127.0.0.1:1883", "--task", "task.toml", "--out"]


def test_simulate_and_gateway_read_the_same_options_alike(tmp_path) -> None:
    from privadx.commands.simulate import build_config

    sim = build_parser().parse_args(["simulate", "--out", str(tmp_path), *OPTIONS])
    gw = build_parser().parse_args([*GATEWAY, str(tmp_path), *OPTIONS])
    config = build_config(sim)
    assert config.training == local_training(gw)
    assert config.training.min_local_steps == 25 and config.training.local_epochs == 3
    assert config.training.proximal_mu == 0.01 and config.training.logit_adjust == 0.5
    assert config.training.augmentation is Augmentation.STRONG
    assert config.training.optimizer.weight_decay == 0.05
    assert config.server_optimizer == server_optimizer(gw)
    assert config.client_lr_schedule is LrSchedule.COSINE == LrSchedule(gw.client_lr_schedule)
    assert server_optimizer(gw).momentum == 0.9 and server_optimizer(gw).name is OptimizerName.SGD


def test_the_defaults_are_the_settings_defaults(tmp_path) -> None:
    from privadx.commands.simulate import build_config

    gw = build_parser().parse_args([*GATEWAY, str(tmp_path)])
    sim = build_config(build_parser().parse_args(["simulate", "--out", str(tmp_path)]))
    assert local_training(gw) == DEFAULT_TRAINING == sim.training
    assert DEFAULT_TRAINING.min_local_steps == 20 and DEFAULT_TRAINING.proximal_mu == 0.0
    assert DEFAULT_TRAINING.logit_adjust == 0.0 and DEFAULT_TRAINING.optimizer.weight_decay == 0
    assert DEFAULT_TRAINING.augmentation is Augmentation.SHIFT
    assert server_optimizer(gw) == DEFAULT_SERVER_OPTIMIZER == sim.server_optimizer
    assert LrSchedule(gw.client_lr_schedule) is DEFAULT_LR_SCHEDULE is sim.client_lr_schedule
    assert sim.rounds == DEFAULT_SIMULATION_ROUNDS == 30
    # An announcement without the newer fields still means the neutral protocol values.
    assert LocalTraining().min_local_steps == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--server-momentum", "1.5"], "momentum"),
        (["--min-local-steps", "100000"], "minimum local steps"),
        (["--proximal-mu", "1000"], "proximal mu"),
        (["--logit-adjust", "50"], "logit adjustment"),
        (["--weight-decay", "20"], "weight decay must lie in [0, 10]"),
        (["--weight-decay", "0.1", "--client-optimizer", "sgd"], "weight decay needs the adam"),
    ],
)
def test_bad_values_get_a_clear_error(tmp_path, capsys, options, message) -> None:
    code = main(["simulate", "--out", str(tmp_path / "run"), *options])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_negative_minimum_is_a_usage_error(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "--out", str(tmp_path / "run"), "--min-local-steps", "-1"])
    assert exit_info.value.code == 2
    assert "--min-local-steps: expected at least 0, got -1" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["-0.5", "inf", "nan", "strong"])
def test_an_impossible_proximal_strength_is_a_usage_error(tmp_path, capsys, value) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "--out", str(tmp_path / "run"), "--proximal-mu", value])
    assert exit_info.value.code == 2
    assert "--proximal-mu: expected" in capsys.readouterr().err


def test_an_unknown_augmentation_is_a_usage_error(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "--out", str(tmp_path / "run"), "--augment", "wild"])
    assert exit_info.value.code == 2
    assert "--augment: invalid choice: 'wild'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("options", "warned"),
    [
        (["--weight-decay", "0.3", "--server-momentum", "0.9"], True),
        (["--weight-decay", "0.3"], False),
        (["--server-momentum", "0.9"], False),
        (["--weight-decay", "0.3", "--server-optimizer", "adam"], False),
    ],
)
def test_weight_decay_with_server_momentum_is_warned_about(
    tmp_path, caplog, options, warned
) -> None:
    from privadx.commands.simulate import build_config

    for argv in (["simulate", "--out", str(tmp_path)], [*GATEWAY, str(tmp_path)]):
        caplog.clear()
        args = build_parser().parse_args([*argv, *options])
        if argv[0] == "simulate":
            build_config(args)
        else:
            server_optimizer(args)
        said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert bool(said) is warned, said
        if warned:
            assert said == [
                "--weight-decay 0.3 with --server-momentum 0.9: the momentum accumulates the "
                "decay; runs with 0.3 and 0.9 diverged in their last rounds. Use one or the other."
            ]
