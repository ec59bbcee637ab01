"""What a gateway run concluded, and how many rounds its privacy budget affords.

Pure functions of the round records and settings (the final model's decision rule is
:mod:`privadx.common.evaluation.decision`).
"""

from __future__ import annotations

import logging
from typing import Any

from gateway.config import GatewayConfig
from privadx.common.errors import InputError
from privadx.common.evaluation.decision import HEADLINE_KEYS
from privadx.common.evaluation.federated import summary_figures

log = logging.getLogger(__name__)


def final_record(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The last round's record (empty before any round)."""
    return records[-1] if records else {}


def federated_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """``federated`` and ``sites`` of ``summary.json`` for the final model."""
    last = final_record(records)
    fed = last.get("federated")
    return {
        "federated": summary_figures(fed),
        "sites": last.get("sites") or {},
        "evaluation": last.get("evaluation"),
    }


def headline(records: list[dict[str, Any]], *, benchmark: bool) -> dict[str, Any]:
    """The summary's top-level figures: the public benchmark's with one, else the federated."""
    last = final_record(records)
    source = (last.get("test") or {}) if benchmark else (last.get("federated") or {})
    return {
        **{k: source.get(k) for k in HEADLINE_KEYS},
        "threshold": source.get("threshold"),
        "figures_from": "benchmark test split" if benchmark else "federated evaluation",
    }


def privacy_facts(config: GatewayConfig, rounds: int) -> dict[str, Any]:
    """What protects the sites' updates in this run (model metadata and manifest)."""
    return {
        "secure_aggregation": config.secure.to_dict() if config.secure else None,
        "differential_privacy": privacy_guarantee(config, rounds) if config.dp else None,
    }


def privacy_guarantee(config: GatewayConfig, rounds: int) -> dict[str, Any]:
    """The DP guarantee after ``rounds`` rounds.

    The accountant is a function of the settings and the rounds done, so a resumed run's
    checkpoint (its round number, settings checked on resume) restores it exactly.
    """
    from tff_core.privacy import privacy_record

    assert config.dp is not None
    record = privacy_record(config.dp, rounds)
    record["noise_added_by"] = "gateway, to the secure sum" if config.secure else "TFF"
    return record


def affordable_rounds_of(config: GatewayConfig) -> int:
    """Rounds the run trains: all asked for, or as many as ``--target-epsilon`` affords.

    Raises:
        InputError: Not even one round fits the privacy budget.
    """
    dp = config.dp
    if dp is None:
        return config.rounds
    from tff_core.privacy import affordable_rounds, epsilon

    rounds = affordable_rounds(dp, config.rounds)
    if rounds == 0:
        raise InputError(
            f"--target-epsilon {dp.target_epsilon} is exceeded by a single round "
            f"(epsilon {epsilon(dp, 1):.3f}); raise the noise or the target"
        )
    if rounds < config.rounds:
        log.warning(
            "privacy budget: --target-epsilon %g allows %d of %d rounds",
            dp.target_epsilon,
            rounds,
            config.rounds,
        )
    return rounds
