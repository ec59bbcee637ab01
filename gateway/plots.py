"""Pictures of the federated evaluation: per-site figures and the reliability diagram.

``federated.png`` in the run folder: the final model's AUC, sensitivity and specificity at the
federated threshold for every site that reported, and the reliability diagram of the sites'
held-out images before and after temperature scaling.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from privadx.common.deps import require

log = logging.getLogger(__name__)

FILE = "federated.png"


def plot_federated(root: Path, records: list[dict[str, Any]]) -> Path | None:
    """Draw the final model's federated evaluation; ``None`` when no site reported."""
    last = records[-1] if records else {}
    fed, sites = last.get("federated"), last.get("sites") or {}
    if not fed:
        return None
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    plt = require("matplotlib.pyplot")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.6))
    names = sorted(sites)
    width = 0.27
    for i, key in enumerate(("auc", "sensitivity", "specificity")):
        values = [sites[n].get(key) or 0.0 for n in names]
        left.bar([x + (i - 1) * width for x in range(len(names))], values, width, label=key)
    left.set_xticks(range(len(names)), [f"{n}\n({sites[n]['examples']})" for n in names])
    left.set_ylim(0, 1)
    left.set_title(f"round {last['round']}: per site (held-out images), federated threshold")
    left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
    left.grid(alpha=0.3, axis="y")
    for key, label in (("reliability", "uncalibrated"), ("reliability_calibrated", "calibrated")):
        rel = fed[key]
        pts = [
            (c, a)
            for c, a, n in zip(rel["confidence"], rel["accuracy"], rel["count"], strict=True)
            if n and c is not None and a is not None
        ]
        if pts:
            ece = fed["ece" if key == "reliability" else "ece_calibrated"]
            right.plot(*zip(*pts, strict=True), marker="o", label=f"{label} (ECE {ece:.3f})")
    right.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1)
    right.set_xlabel("confidence")
    right.set_ylabel("accuracy")
    right.set_title(f"reliability (temperature {fed['temperature']:.2f})")
    right.legend(loc="upper left")
    right.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(root) / FILE
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
