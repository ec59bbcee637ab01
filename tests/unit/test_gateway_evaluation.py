"""The gateway's collection of evaluation reports: validation, deadlines, who reported."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.evaluation import FederatedEvaluation
from gateway.rounds import signature_check
from privadx.common.evaluation.report import BINS, SCHEME, build_report
from privadx.common.trust.signing import SIGNATURE_KEY
from privadx.common.wire import tensors
from privadx.common.wire.envelope import Envelope, Kind
from privadx.common.wire.messages import evaluation_envelope

RUN, SHA = "run-1", "ab" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _report(seed: int, n: int = 80) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    logits = rng.normal(size=(n, 2))
    logits[np.arange(n), labels] += 1.0
    return build_report(logits, labels, num_classes=2).to_tensors()


def _env(site: str, payload: dict[str, np.ndarray] | bytes, **change: object) -> Envelope:
    env = evaluation_envelope(
        run=str(change.pop("run", RUN)),
        round_num=int(change.pop("round_num", 3)),  # type: ignore[call-overload]
        site=site,
        report=payload if isinstance(payload, dict) else {},
        meta={"base_model": SHA, "scheme": SCHEME, "examples": 80},
    )
    if isinstance(payload, bytes):
        env = Envelope(**{**env.__dict__, "payload": payload})
    meta = {**env.meta, **{k: v for k, v in change.items() if k in ("base_model", "scheme")}}
    return Envelope(**{**env.__dict__, "meta": {**meta, SIGNATURE_KEY: "x"}})


def _collector(clock: Clock, verify: object = None) -> FederatedEvaluation:
    fe = FederatedEvaluation(
        run=RUN, num_classes=2, positive_class=1, timeout=30.0, verify=verify, clock=clock
    )
    fe.start(3, SHA, {"site-0", "site-1", "site-2"})
    return fe


def test_reports_close_when_all_expected_sites_reported() -> None:
    clock = Clock()
    fe = _collector(clock)
    for i in range(3):
        assert fe.due() == []
        assert fe.offer(_env(f"site-{i}", _report(i)), f"site-{i}") is None
    assert fe.due() == [3]
    record = fe.close(3)
    assert record["sites_reported"] == ["site-0", "site-1", "site-2"]
    assert record["sites_missing"] == [] and record["rejected"] == {}
    assert record["federated"]["examples"] == 240 and record["federated"]["sites_reported"] == 3
    assert set(record["sites"]) == {"site-0", "site-1", "site-2"}
    assert all(0 <= s["auc"] <= 1 for s in record["sites"].values())
    assert fe.open == {}
    # A report sent again after the close (a site resends when the model is republished) is
    # late, not an error of the site's.
    assert fe.offer(_env("site-0", _report(0)), "site-0") == "late"
    fe.start(4, "m4", {"site-0"})
    assert fe.open[4].rejected == {}


def test_deadline_closes_with_the_sites_that_reported() -> None:
    clock = Clock()
    fe = _collector(clock)
    fe.offer(_env("site-1", _report(1)), "site-1")
    fe.site_offline("site-2")  # gone: no longer waited for
    assert fe.due() == []
    clock.now += 31
    assert fe.due() == [3]
    record = fe.close(3)
    assert record["sites_reported"] == ["site-1"] and record["sites_missing"] == ["site-0"]
    assert record["federated"]["examples"] == 80


def test_an_evaluation_no_site_is_expected_for_closes_at_once() -> None:
    clock = Clock()
    fe = _collector(clock)
    fe.start(4, "m4", set())  # no online site holds images back
    assert fe.due() == [4]  # not after the 30 s timeout: nobody will report
    assert fe.close(4)["federated"] is None
    for i in range(3):  # the sites round 3's model waits for all go offline
        fe.site_offline(f"site-{i}")
    assert fe.due() == [3]


def test_nothing_reported_gives_no_figures() -> None:
    clock = Clock()
    fe = _collector(clock)
    clock.now += 31
    record = fe.close(fe.due()[0])
    assert record["federated"] is None and record["sites"] == {}


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (
            lambda: _env("site-0", {**_report(0), "hist": _report(0)["hist"][:, :, :10]}),
            "malformed",
        ),
        (
            lambda: _env(
                "site-0",
                {**_report(0), "confusion": _report(0)["confusion"].astype(np.int32) - 50},
            ),
            "malformed",
        ),
        (lambda: _env("site-0", {**_report(0), "nll": np.full(41, np.inf)}), "malformed"),
        (lambda: _env("site-0", b"\x00\x01garbage"), "malformed"),
        (lambda: _env("site-0", _report(0), round_num=2), "wrong round"),
        (lambda: _env("site-0", _report(0), run="run-0"), "wrong run"),
        (lambda: _env("site-0", _report(0), base_model="cd" * 32), "stale model"),
        (lambda: _env("site-0", _report(0), scheme="other"), "wrong scheme"),
        (lambda: _env("site-1", _report(0)), "sender mismatch"),
    ],
)
def test_malformed_reports_are_rejected_with_a_reason_and_counted(make, reason) -> None:
    clock = Clock()
    fe = _collector(clock)
    got = fe.offer(make(), "site-0")
    assert got is not None and got.startswith(reason), got
    assert dict(fe.open[3].rejected) == {got.split(":")[0]: 1}  # wrong rounds count too
    # The evaluation still completes with the honest reports.
    for i in range(3):
        fe.offer(_env(f"site-{i}", _report(i)), f"site-{i}")
    assert fe.close(fe.due()[0])["federated"]["sites_reported"] == 3


def test_unsigned_reports_are_rejected_and_duplicates_kept_once() -> None:
    clock = Clock()
    verify = signature_check(object(), allow_unsigned=False)  # type: ignore[arg-type]
    fe = _collector(clock, verify)
    env = _env("site-0", _report(0))
    unsigned = Envelope(
        **{**env.__dict__, "meta": {k: v for k, v in env.meta.items() if k != SIGNATURE_KEY}}
    )
    assert fe.offer(unsigned, "site-0").startswith("unsigned")  # type: ignore[union-attr]
    assert fe.open[3].rejected == {"unsigned": 1}
    plain = FederatedEvaluation(
        run=RUN, num_classes=2, positive_class=1, timeout=30.0, verify=None, clock=clock
    )
    plain.start(3, SHA, {"site-0"})
    assert plain.offer(env, "site-0") is None
    assert plain.offer(env, "site-0") == "duplicate"
    assert plain.open[3].rejected == {}
    assert tensors.from_bytes(env.payload)["hist"].shape == (2, 1, BINS)
    assert env.kind is Kind.EVALUATION
