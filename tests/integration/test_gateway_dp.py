"""Differential privacy in deployment: the gateway's DP-FedAvg step, plain and on a secure
sum, its noise and clipping, and the accountant through a real run over Mosquitto."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.optim import OptimizerName, OptimizerSpec
from privadx.common.errors import InputError
from tff_core.privacy import DpSpec, epsilon, noised_mean
from tff_core.robust import AggregationRule

SGD1 = OptimizerSpec(name=OptimizerName.SGD, learning_rate=1.0)
BASE = {"w": np.zeros((40, 50), np.float32), "b": np.zeros(50, np.float32)}
SPEC = DpSpec(noise_multiplier=1.0, clients_per_round=4, total_clients=4, clip=0.1, adaptive=False)


def test_noise_on_a_secure_sum_has_the_dp_fedavg_scale() -> None:
    total = np.full(20_000, 0.3)  # a sum of 4 clipped updates
    out = noised_mean(total, SPEC, np.random.default_rng(0))
    assert abs(out.mean() - 0.3 / 4) < 1e-3
    assert abs(out.std() / (SPEC.noise_multiplier * SPEC.clip / 4) - 1) < 0.03
    with pytest.raises(InputError, match="fixed clipping"):
        noised_mean(total, DpSpec(noise_multiplier=0.1, clients_per_round=4, total_clients=4),
                    np.random.default_rng(0))  # fmt: skip


def test_plain_updates_are_clipped_and_noised_by_tff() -> None:
    pytest.importorskip("tensorflow_federated")
    from tff_core.aggregation import FedAvgServer
    from tff_core.runtime import tff_runtime

    # The noise is unseeded, so each check's margin is many standard errors wide: 20,100
    # coordinates put the noise's measured spread within 0.5 % (1 sd) of its scale, and a
    # noise multiplier of 0.1 puts the noise along the update's direction at 0.0025 (1 sd).
    base = {"w": np.zeros((200, 100), np.float32), "b": np.zeros(100, np.float32)}
    spec = DpSpec(noise_multiplier=0.1, clients_per_round=4, total_clients=4, clip=0.1,
                  adaptive=False)  # fmt: skip
    size = sum(x.size for x in base.values())
    # Four sites whose updates are 100 x the clip norm, all in one direction.
    direction = {k: np.ones_like(v) / np.sqrt(size) for k, v in base.items()}
    update = {k: (-10.0 * v).astype(np.float32) for k, v in direction.items()}  # trained - base
    with tff_runtime():
        server = FedAvgServer(base, SGD1, AggregationRule.MEAN, dp=spec)
        new = server.aggregate(base, [(update, 100 + i) for i in range(4)])
    # TFF's delta is base - trained = -update = 10 * direction, clipped to 0.1 * direction;
    # the server step w - mean(delta) moves the model by -0.1 * direction plus the noise / 4.
    got = np.concatenate([(new[k] - base[k]).ravel() for k in base])
    expected = -0.1 * np.concatenate([direction[k].ravel() for k in base])
    scale = spec.noise_multiplier * spec.clip / 4
    assert abs((got - expected).std() / scale - 1) < 0.05  # 10 sd
    assert abs(float(np.dot(got, expected / np.linalg.norm(expected))) - 0.1) < 8 * scale


@pytest.mark.slow
def test_secure_dp_run_accounts_every_round_and_stops_at_the_target(
    tmp_path: Path, breast_npz: Path
) -> None:
    pytest.importorskip("tensorflow_federated")
    from harness.federation import federate, split_sites
    from privadx.common.trust.manifest import manifest_path
    from privadx.common.wire.secure import SecureSettings

    spec = DpSpec(
        noise_multiplier=2.0,
        clients_per_round=4,
        total_clients=4,
        clip=0.5,
        adaptive=False,
        target_epsilon=3.5,
    )
    assert epsilon(spec, 2) <= 3.5 < epsilon(spec, 3)
    sites = split_sites(breast_npz, 4, alpha=100.0, seed=0)
    result = federate(
        tmp_path,
        sites,
        dataset=str(breast_npz),
        rounds=5,
        seed=0,
        aggregation=AggregationRule.MEAN,
        dp=spec,
        secure=SecureSettings(clip=0.5, weighted=False, step_timeout=30.0),
    )
    records = [
        json.loads(line) for line in (result.out / "metrics.jsonl").read_text().split("\n") if line
    ]
    assert [r["round"] for r in records] == [1, 2]  # round 3 would pass epsilon 3.5
    for r in records:
        assert r["privacy"]["epsilon"] == pytest.approx(epsilon(spec, r["round"]))
        assert r["privacy"]["noise_added_by"] == "gateway, to the secure sum"
        assert r["examples"] == 4  # unweighted: each site counts once
    assert result.summary["rounds"] == 2
    privacy = result.summary["privacy"]
    assert privacy["differential_privacy"]["epsilon"] == pytest.approx(epsilon(spec, 2))
    assert privacy["secure_aggregation"]["weighted"] is False
    manifest = json.loads(manifest_path(result.out / "model.onnx").read_text())
    assert manifest["manifest"]["privacy"] == json.loads(json.dumps(privacy))
    for site_dir in result.site_dirs:  # every site holds the final model
        assert (site_dir / "model.onnx").is_file()


def test_gateway_refuses_dp_settings_it_cannot_honour(tmp_path: Path) -> None:
    from gateway.config import GatewayConfig
    from privadx.common.mqtt_link import BrokerAddress
    from privadx.common.task import task_from_dataset
    from privadx.common.wire.secure import SecureSettings

    base = {
        "broker": BrokerAddress.parse("mqtt://127.0.0.1:1883"),
        "out": tmp_path,
        "task": task_from_dataset("breastmnist"),
        "insecure": True,
        "allow_unsigned": True,
        "aggregation": AggregationRule.MEAN,
    }
    adaptive = DpSpec(noise_multiplier=0.1, clients_per_round=4, total_clients=4)
    with pytest.raises(InputError, match="--dp-fixed-clip"):
        GatewayConfig(**base, dp=adaptive, secure=SecureSettings(clip=0.1, weighted=False))
    with pytest.raises(InputError, match="unweighted"):
        GatewayConfig(**base, dp=SPEC, secure=SecureSettings(clip=0.1))
    with pytest.raises(InputError, match="median"):
        GatewayConfig(**{**base, "aggregation": AggregationRule.MEDIAN}, dp=SPEC)
