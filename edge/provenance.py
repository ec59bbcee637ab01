"""Where a model came from, in the words a clinician reads: one line, or a report's banner.

The facts come from the model's signed manifest (run, round, contributing sites, federated
metrics) and from the provenance in the model's own metadata (privacy), which the manifest's
hash covers. Gateway and simulation models word their privacy facts differently; both are read
here. Every value is checked for its type, since a manifest is data from elsewhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from privadx.common.model_info import ModelInfo

_METRICS = (("auc", "AUC"), ("sensitivity", "sensitivity"), ("specificity", "specificity"))


@dataclass(frozen=True, kw_only=True)
class Provenance:
    """A diagnosed model's origin and quality as far as its files say."""

    signed: bool
    trained_by: str | None = None
    """``privadx gateway`` (a federation) or ``privadx simulate`` (a simulation)."""
    run: str | None = None
    round: int | None = None
    contributors: int | None = None
    federated: dict[str, float] | None = None
    """Federated evaluation figures (AUC, sensitivity, specificity) of the model."""
    sites_reported: int | None = None
    epsilon: float | None = None
    delta: float | None = None
    secure_aggregation: bool = False

    @classmethod
    def of(cls, manifest: dict[str, Any] | None, info: ModelInfo) -> Provenance:
        """From a verified manifest (``None``: unsigned) and the model's own metadata.

        The manifest's facts come first; the metadata fills what it lacks (a model exported
        from a simulation's weights, or an unsigned one, whose banner says so).
        """
        signed, own = manifest or {}, info.provenance
        sites = own.get("sites")
        run = signed.get("run", own.get("run"))
        metrics = _dict(signed.get("metrics")) or _dict(own.get("federated_metrics"))
        federated = {k: float(metrics[k]) for k, _ in _METRICS if _number(metrics.get(k))}
        privacy = _dict(own.get("privacy"))
        dp = _dict(privacy.get("differential_privacy")) or privacy  # gateway, or simulation
        return cls(
            signed=manifest is not None,
            trained_by=str(own["trained_by"]) if isinstance(own.get("trained_by"), str) else None,
            run=str(run) if isinstance(run, str | int) and not isinstance(run, bool) else None,
            round=_whole(signed.get("round", own.get("rounds"))),
            contributors=_whole(
                signed.get("contributors", len(sites) if isinstance(sites, list) else sites)
            ),
            federated=federated or None,
            sites_reported=_whole(metrics.get("sites_reported")),
            epsilon=float(dp["epsilon"]) if _number(dp.get("epsilon")) else None,
            delta=float(dp["delta"]) if _number(dp.get("delta")) else None,
            secure_aggregation=bool(privacy.get("secure_aggregation")),
        )

    def line(self) -> str:
        """One line: signature, run, round, sites and the federated AUC."""
        if not self.signed:
            return "model: UNSIGNED (origin and integrity not checked)"
        text = f"model: signed by the federation gateway; run {self.run}, round {self.round}"
        if self.contributors is not None:
            text += f", {self.contributors} contributing sites"
        auc = (self.federated or {}).get("auc")
        if auc is not None and self.sites_reported:
            text += f", federated AUC {auc:.4f} on {self.sites_reported} sites' held-out images"
        elif auc is not None:
            text += f", AUC {auc:.4f}"
        return text

    def banner(self) -> list[tuple[str, str]]:
        """``(label, value)`` rows for a report's banner; every row is always present."""
        missing = "not recorded"
        figures = self.federated or {}
        quality = ", ".join(f"{label} {figures[k]:.4f}" for k, label in _METRICS if k in figures)
        if quality and self.sites_reported:
            quality += f" (held-out images of {self.sites_reported} sites)"
        if self.epsilon is not None:
            privacy = f"differential privacy, epsilon {self.epsilon:.2f}"
            privacy += f" at delta {self.delta:g}" if self.delta is not None else ""
        else:
            privacy = "no differential privacy"
        if self.secure_aggregation:
            privacy += "; secure aggregation (the gateway saw only sums)"
        return [
            (
                "signature",
                "signed by the federation gateway, checked against the federation CA"
                if self.signed
                else "UNSIGNED: origin and integrity not checked",
            ),
            ("trained by", self.trained_by or missing),
            ("run", self.run or missing),
            ("round", str(self.round) if self.round is not None else missing),
            (
                "contributing sites",
                str(self.contributors) if self.contributors is not None else missing,
            ),
            ("federated evaluation", quality or missing),
            ("privacy", privacy),
        ]


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
