"""Secure aggregation over a real Mosquitto (mutual TLS, signed messages) with edge agents.

The tolerance against the plain run of the same seed (which is bit-reproducible here), both
with 1 local epoch per round:

- Round 1: the gateway recovers the weighted mean of the clipped updates with an error below
  ``sites * step / examples`` per coordinate (step = 2 * clip / (2^16 - 1) = 3.05e-4 at
  clip 10), no clipping happens at clip 10 (update norms here are about 1 or less), and the
  server step is the plain run's. So the first global models must agree within that bound
  plus float32 rounding (measured: 4.68e-7 against a bound of 8.11e-7).
- The final model: the next round's local training starts from weights that differ by that
  much, and Adam turns tiny differences in near-zero gradients into steps of the learning
  rate, so the final weights differ more (measured: 1.08% of the distance the model
  travelled, 9.75e-4 at most per coordinate) while the test AUC agrees within half a point
  (measured: 0.8428 vs 0.8427) and the accuracy at each run's own threshold within two
  points (measured: equal, 0.7532). A wrong sum (a site missing or counted twice, a mask
  left in) moves the model by far more than either bound.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from edge.agent import EdgeAgent
from harness.federation import (
    SiteCrashError,
    federate,
    run_federation,
    split_sites,
    start_broker,
    training_parts,
)
from models.settings import LocalTraining
from privadx.common.weights_io import load_weights
from privadx.common.wire.envelope import Envelope
from privadx.common.wire.secure import SecureSettings, Step
from tff_core.robust import AggregationRule

pytest.importorskip("tensorflow_federated")

SITES, ROUNDS = 10, 2
DROPPERS = {"site-1", "site-4", "site-7"}


GLOBALS: dict[tuple[str, int], dict[str, np.ndarray]] = {}
"""Global model of each (federation, round) as the sites received it."""


class Recording(EdgeAgent):
    """Keeps every global model it receives in GLOBALS."""

    def _on_model(self, env: Envelope) -> None:
        super()._on_model(env)
        assert self.model is not None
        GLOBALS.setdefault((self.config.federation, self.model.round), self.model.weights)


class CrashAfterMasking(Recording):
    """Crashes in the last round right after its masked input went out."""

    def _on_secagg(self, env: Envelope) -> None:
        super()._on_secagg(env)
        if (
            self.config.site_id in DROPPERS
            and env.round == ROUNDS
            and self.store.submitted(env.run, env.round)
        ):
            raise SiteCrashError


def _flat(weights: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([w.ravel() for w in weights.values()]).astype(np.float64)


def _records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_ten_sites_three_dropping_after_masking_match_the_plain_run(
    tmp_path: Path, pneumonia_npz: Path
) -> None:
    sites = split_sites(pneumonia_npz, SITES, alpha=0.5, seed=0)
    broker = start_broker(tmp_path / "broker", SITES)
    common: dict[str, Any] = {
        "dataset": str(pneumonia_npz),
        "rounds": ROUNDS,
        "seed": 0,
        "aggregation": AggregationRule.MEAN,
        "training": LocalTraining(local_epochs=1),
        "export_onnx": False,
    }
    try:
        (tmp_path / "secure").mkdir()
        secure = run_federation(
            broker,
            tmp_path / "secure",
            sites,
            federation="secure",
            secure=SecureSettings(clip=10.0, step_timeout=60.0),
            agent_class=CrashAfterMasking,
            **common,
        )
        (tmp_path / "plain").mkdir()
        plain = run_federation(
            broker, tmp_path / "plain", sites, federation="plain", agent_class=Recording, **common
        )
    finally:
        broker.stop()
    records = _records(secure.out)
    for r in records:
        facts = r["secure_aggregation"]
        assert r["updates"] == SITES and facts["u3"] == sorted(r["update_bytes"])
        assert facts["threshold"] == SITES // 2 + 1
        assert r["examples"] == sum(len(s) for s in training_parts(sites))
    # The reports joined secure sums too: totals only, no per-site figure at the gateway.
    names = sorted(f"site-{i}" for i in range(SITES))
    assert records[0]["evaluation"]["sites_reported"] == names
    assert records[-1]["evaluation"]["sites_reported"] == sorted(set(names) - DROPPERS)
    assert all(r["sites"] == {} and r["federated"]["auc"] > 0.5 for r in records)
    plain_first = _records(plain.out)[0]["federated"]
    assert records[0]["federated"]["examples"] == plain_first["examples"]
    assert abs(records[0]["federated"]["auc"] - plain_first["auc"]) <= 0.002
    assert secure.summary["federated"]["sites_reported"] == SITES - len(DROPPERS)
    last = records[-1]["secure_aggregation"]
    assert not DROPPERS & set(last["unmasked_by"])  # the crashed sites never unmasked
    assert len(last["unmasked_by"]) >= last["threshold"]
    step = SecureSettings(clip=10.0).quant_spec.step
    first_s, first_p, start = (
        _flat(GLOBALS[(f, r)]) for f, r in (("secure", 1), ("plain", 1), ("plain", 0))
    )
    bound = SITES * step / records[0]["examples"] + 4 * float(np.spacing(np.abs(first_p).max()))
    first = float(np.abs(first_s - first_p).max())
    a, _ = load_weights(secure.out / "weights.npz")
    b, _ = load_weights(plain.out / "weights.npz")
    final_s, final_p = _flat(a), _flat(b)
    relative = float(np.linalg.norm(final_s - final_p) / np.linalg.norm(final_p - start))
    print(
        f"round 1: max |secure - plain| {first:.3g} (bound {bound:.3g}); final: max "
        f"{np.abs(final_s - final_p).max():.3g}, {relative:.2%} of the distance travelled; "
        f"secure accuracy {secure.summary['accuracy']:.4f} AUC {secure.summary['auc']:.4f}; "
        f"plain accuracy {plain.summary['accuracy']:.4f} AUC {plain.summary['auc']:.4f}"
    )
    assert first <= bound
    assert relative <= 0.05
    assert abs(secure.summary["auc"] - plain.summary["auc"]) <= 0.005
    # Accuracy is taken at the threshold each run picks on the validation split, a step
    # function of the weights: one run had AUC 0.9253 in both and accuracy 0.8686 vs 0.8590.
    assert abs(secure.summary["accuracy"] - plain.summary["accuracy"]) <= 0.02


class SilentAtFirstUnmask(EdgeAgent):
    """Does not answer the first unmasking request it gets (a site gone quiet)."""

    quiet: ClassVar[set[str]] = {"site-0", "site-1"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.was_quiet = False

    def _on_secagg(self, env: Envelope) -> None:
        if (
            self.config.site_id in self.quiet
            and env.meta.get("step") == Step.UNMASK
            and not self.was_quiet
        ):
            self.was_quiet = True
            return
        super()._on_secagg(env)


@pytest.mark.slow
def test_fewer_than_threshold_survivors_fail_the_attempt_and_the_round_goes_on(
    tmp_path: Path, breast_npz: Path
) -> None:
    sites = split_sites(breast_npz, 4, alpha=100.0, seed=0)
    result = federate(
        tmp_path,
        sites,
        dataset=str(breast_npz),
        rounds=2,
        seed=0,
        aggregation=AggregationRule.MEAN,
        secure=SecureSettings(clip=10.0, step_timeout=8.0),
        agent_class=SilentAtFirstUnmask,
        export_onnx=False,
    )
    first, second = _records(result.out)
    assert first["attempts"] == 2 and second["attempts"] == 1
    (failure,) = first["secure_aggregation"]["failed_attempts"]
    assert "2 sites answered the unmasking; need 3" in failure
    assert first["updates"] == second["updates"] == 4
    held_out = sum(len(s) for s in sites) - first["examples"]
    for record in (first, second):
        assert record["evaluation"]["sites_reported"] == [f"site-{i}" for i in range(4)]
        assert record["federated"]["examples"] == held_out and record["sites"] == {}
    assert result.summary["decision"]["source"] == "federated"
