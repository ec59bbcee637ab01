"""The run folder every training command writes: JSON-lines metrics, summary, plot.

Layout (shared by ``privadx simulate`` and, later, the gateway):

- ``config.json``: the run's configuration;
- ``metrics.jsonl``: one JSON object per round (and per baseline epoch);
- ``summary.json``: final test metrics and run facts;
- ``curves.png``: test AUC and accuracy per round.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from privadx.common.deps import require
from privadx.common.fileio import write_atomic


def json_ready(value: Any) -> Any:
    """JSON-safe copy: NaN and infinities become ``None`` (strict JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return json_ready(value.tolist())
    return value


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented strict JSON, atomically."""
    write_atomic(path, (json.dumps(json_ready(obj), indent=2, sort_keys=True) + "\n").encode())


class RunFolder:
    """Writes the files of one training run into ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.root / "metrics.jsonl"
        self.metrics_path.write_text("", encoding="utf-8")

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Append one record to ``metrics.jsonl`` (flushed at once, so a crash keeps it)."""
        with self.metrics_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(json_ready(record), sort_keys=True) + "\n")

    def write_metrics(self, records: list[dict[str, Any]]) -> None:
        """Replace ``metrics.jsonl`` with ``records`` atomically (a resumed run's history)."""
        text = "".join(json.dumps(json_ready(r), sort_keys=True) + "\n" for r in records)
        write_atomic(self.metrics_path, text.encode())

    def write(self, name: str, obj: Any) -> Path:
        """Write ``obj`` as ``root/name`` (JSON)."""
        path = self.root / name
        write_json(path, obj)
        return path

    def read_metrics(self) -> list[dict[str, Any]]:
        """All records written so far."""
        lines = self.metrics_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def plot(self, name: str = "curves.png") -> Path:
        """Plot test AUC and accuracy per round for every series in the metrics."""
        matplotlib = require("matplotlib")
        matplotlib.use("Agg")
        plt = require("matplotlib.pyplot")
        records = self.read_metrics()
        series = sorted({r.get("series", "federated") for r in records})
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, key in zip(axes, ("auc", "accuracy"), strict=True):
            for s in series:
                pts = [
                    (r["round"], r["test"][key])
                    for r in records
                    if r.get("series", "federated") == s and r.get("test", {}).get(key) is not None
                ]
                if pts:
                    ax.plot(*zip(*pts, strict=True), marker="o", markersize=3, label=s)
            ax.set_xlabel("round")
            ax.set_ylabel(f"test {key}")
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend()
        fig.tight_layout()
        path = self.root / name
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path
