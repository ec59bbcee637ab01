"""How an exported model turns logits into a diagnosis: threshold and temperature.

Both come from the federated evaluation of the final model (the sites' held-out images):
the temperature with the smallest summed NLL, and the Youden threshold carried over to the
calibrated probabilities. Without any report they come from a public benchmark's validation
split if the run had one, else the model decides at argmax, uncalibrated. One rule for the
gateway and the simulation alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

HEADLINE_KEYS = ("accuracy", "auc", "sensitivity", "specificity")
"""The figures a model's decisions are judged by (a summary's top level, model metadata)."""


@dataclass(frozen=True)
class Decision:
    """How the exported model turns logits into a diagnosis."""

    threshold: float | None
    """Binary tasks: predict the positive class when its (calibrated) probability is at least
    this; ``None``: argmax."""
    temperature: float | None
    """Logits are divided by this before the softmax (``None``: not calibrated)."""
    source: str
    """Where the two came from: ``federated``, ``benchmark`` or ``none``."""

    def to_dict(self) -> dict[str, Any]:
        """The form of ``summary.json`` and of a model's provenance."""
        return {"source": self.source, "threshold": self.threshold, "temperature": self.temperature}


def decision(records: list[dict[str, Any]]) -> Decision:
    """The final model's threshold and temperature (see the module docstring)."""
    last = records[-1] if records else {}
    fed = last.get("federated")
    if fed:
        calibrated = fed.get("threshold_calibrated")
        return Decision(calibrated, fed["temperature"], "federated")
    test = last.get("test") or {}
    if test.get("threshold") is not None:
        return Decision(test["threshold"], None, "benchmark")
    return Decision(None, None, "none")
