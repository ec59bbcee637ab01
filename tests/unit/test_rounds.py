from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from gateway.rounds import RoundState
from privadx.common.wire.messages import update_envelope
from privadx.common.wire.update_codec import Encoding, model_update

REF = {"w": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32)}


def _state(**kw) -> RoundState:
    defaults = dict(
        run="run-1",
        number=4,
        model_sha256="base",
        deadline=100.0,
        min_updates=2,
        expected={"s1", "s2", "s3"},
    )
    return RoundState(**{**defaults, **kw})


def _update(
    site="s1",
    round_num=4,
    run="run-1",
    base="base",
    examples=10,
    update=None,
    encoding=Encoding.FLOAT32,
):
    update = update or {k: np.ones_like(v) for k, v in REF.items()}
    return update_envelope(
        run=run,
        round_num=round_num,
        site=site,
        update=update,
        encoding=encoding,
        examples=examples,
        metrics={"loss": 0.3},
        base_model=base,
    )


def test_accepts_valid_update_once() -> None:
    st = _state()
    env = _update()
    assert st.offer(env, "s1", REF) is None
    assert st.offer(env, "s1", REF) == "duplicate"
    assert st.offer(replace(env, message_id="other"), "s1", REF) == "duplicate"
    assert list(st.accepted) == ["s1"] and st.accepted["s1"].examples == 10
    assert st.rejected.total() == 0


def test_rejections_carry_reasons() -> None:
    st = _state()
    assert "arrived during round 4" in st.offer(_update(round_num=3), "s1", REF)
    assert "wrong run" in st.offer(_update(run="run-0"), "s1", REF)
    assert "sender mismatch" in st.offer(_update(site="s2"), "s1", REF)
    assert "stale model" in st.offer(_update(base="old"), "s1", REF)
    assert "example count" in st.offer(_update(examples=0), "s1", REF)
    bad_shape = {"w": np.ones((3, 2), np.float32), "b": np.ones(3, np.float32)}
    assert "tensor w" in st.offer(_update(update=bad_shape), "s1", REF)
    assert st.accepted == {}
    assert st.rejected["wrong round"] == 1 and st.rejected.total() == 6


def test_ready_when_all_expected_or_deadline_with_quorum() -> None:
    st = _state()
    st.offer(_update("s1"), "s1", REF)
    assert not st.ready(now=50) and not st.expired_without_quorum(now=50)
    assert st.expired_without_quorum(now=150) and not st.ready(now=150)
    st.offer(_update("s2"), "s2", REF)
    assert not st.ready(now=50) and st.ready(now=150)
    st.offer(_update("s3"), "s3", REF)
    assert st.ready(now=50)
    summary = st.summary()
    assert summary["updates"] == 3 and summary["examples"] == 30


def test_compressed_updates_are_decoded_against_the_global_model() -> None:
    st = _state()
    trained = {"w": np.full((2, 3), 0.5, np.float32), "b": np.full(3, -0.25, np.float32)}
    base = {k: v + 3 for k, v in REF.items()}
    update = model_update(trained, base)
    assert st.offer(_update("s1", update=update, encoding=Encoding.INT8), "s1", base) is None
    assert st.offer(_update("s2", update=update, encoding=Encoding.FLOAT16), "s2", base) is None
    for site in ("s1", "s2"):
        got = st.accepted[site].update  # trained - global, whatever the encoding
        assert all(
            got[k].dtype == np.float32 and np.allclose(got[k], trained[k] - base[k], atol=1e-3)
            for k in REF
        )


def test_unknown_encoding_is_rejected_with_reason() -> None:
    env = _update()
    env = env.with_meta(encoding="zip")
    assert "unknown encoding" in _state().offer(env, "s1", REF)


def test_claimed_example_counts_are_capped_at_a_multiple_of_the_median() -> None:
    from privadx.common.weighting import cap_example_counts

    honest = {"s1": 100, "s2": 300, "s3": 50}
    assert cap_example_counts(honest, 10.0) == honest
    claimed = {**honest, "liar": 10**8}
    assert cap_example_counts(claimed, 10.0) == {**honest, "liar": 1000}  # others' median 100
    assert cap_example_counts(claimed, 0) == claimed
    # Two sites: the liar's own claim no longer sets the median (it was (100 + 10^9) / 2).
    assert cap_example_counts({"s1": 100, "liar": 999_999_999}, 10.0) == {"s1": 100, "liar": 1000}
    assert cap_example_counts({"s1": 300, "s2": 100}, 10.0) == {"s1": 300, "s2": 100}
    # Ten sites, one liar: capped at 10x the nine others' median.
    ten = {f"s{i}": 100 + 10 * i for i in range(9)} | {"liar": 10**6}
    assert cap_example_counts(ten, 10.0)["liar"] == 1400
    assert cap_example_counts({"alone": 10**6}, 10.0) == {"alone": 10**6}


@pytest.mark.parametrize("sites", [2, 3, 10])
@pytest.mark.parametrize("ratio", [10.0, 3.0, 1.0])
def test_a_liars_share_of_the_weight_is_the_documented_bound(sites: int, ratio: float) -> None:
    from privadx.common.weighting import cap_example_counts, worst_share

    claims = {f"s{i}": 200 for i in range(sites - 1)} | {"liar": 10**9}
    capped = cap_example_counts(claims, ratio)
    share = capped["liar"] / sum(capped.values())
    assert share == pytest.approx(worst_share(ratio, sites))
    assert share < 1 - 1e-3 and (sites < 10 or ratio > 1 or share <= 0.1)


def test_an_update_of_another_run_with_the_same_id_is_stale() -> None:
    from privadx.common.wire.messages import RUN_NONCE

    st = _state(run_nonce="n" * 32)
    assert "stale run" in st.offer(_update(), "s1", REF)  # made without this run's value
    captured = _update().with_meta(**{RUN_NONCE: "o" * 32})
    assert "stale run" in st.offer(replace(captured, message_id="c"), "s1", REF)
    assert st.offer(_update().with_meta(**{RUN_NONCE: "n" * 32}), "s1", REF) is None


def test_chunk_headers_are_checked_against_the_signature_before_buffering(tmp_path) -> None:
    from gateway.rounds import chunk_check
    from privadx.common.trust.federation import init_federation
    from privadx.common.trust.identity import Identity
    from privadx.common.wire.chunks import split

    pki = init_federation(tmp_path, federation="f", hosts=["h"], port=1, sites=["s1", "s2"])
    me = Identity.load(pki.site("s1"))
    verifier = Identity.load(pki.gateway).verifier()
    check = chunk_check(verifier, allow_unsigned=False)
    assert check is not None
    chunks = split(me.signer.sign_envelope(_update()), 64)
    assert len(chunks) > 2 and all(check(c, "s1") is None for c in chunks)
    assert str(check(chunks[0], "s2")).startswith("bad signature")  # on another site's topic
    info = {**chunks[0].meta["chunk"], "total_sha256": "0" * 64}
    assert str(check(chunks[0].with_meta(chunk=info), "s1")).startswith("bad signature")
    unsigned = split(_update(), 64)[0]
    assert str(check(unsigned, "s1")).startswith("unsigned")
    lenient = chunk_check(verifier, allow_unsigned=True)
    assert lenient is not None and lenient(unsigned, "s1") is None
