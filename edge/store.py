"""What an edge device keeps on disk: the newest global model, the ONNX model, its progress.

Files in the model folder, each written atomically (temporary file, fsync, rename):

- ``global.npz``: newest global weights (PrivaDx weights format, with the model spec);
- ``model.onnx`` and ``model.onnx.sha256``: the exported model for ``privadx diagnose``;
- ``state.json``: the last round this site sent an update for, per run (so a restart never
  trains and sends the same round twice), and byte counters.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import DataError
from common.fileio import write_atomic
from common.weights_io import save_weights


class ModelStore:
    """The model folder of one site."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_path = self.root / "state.json"
        self.state: dict[str, Any] = self._load_state()

    def _load_state(self) -> dict[str, Any]:
        if not self.state_path.exists():
            return {"submitted": {}, "bytes_sent": 0, "bytes_received": 0}
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
            state.setdefault("submitted", {})
            return state
        except (OSError, ValueError) as exc:
            raise DataError(f"{self.state_path}: unreadable agent state ({exc})") from exc

    def save_state(self) -> None:
        """Persist progress and counters."""
        write_atomic(self.state_path, json.dumps(self.state, indent=2, sort_keys=True).encode())

    def submitted(self, run: str, round_num: int) -> bool:
        """Whether this site already sent its update for ``round_num`` of ``run``."""
        return int(self.state["submitted"].get(run, 0)) >= round_num

    def mark_submitted(self, run: str, round_num: int) -> None:
        """Record that the update for ``round_num`` of ``run`` was sent."""
        self.state["submitted"][run] = round_num
        self.save_state()

    def save_global(self, weights: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Keep the newest global model."""
        save_weights(self.root / "global.npz", weights, meta)

    def save_onnx(self, data: bytes, sha256: str) -> Path:
        """Verify and keep the ONNX model; raises :class:`DataError` on a hash mismatch."""
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise DataError(f"received ONNX model has SHA-256 {actual}, announced {sha256}")
        path = self.root / "model.onnx"
        write_atomic(path, data)
        write_atomic(path.with_name("model.onnx.sha256"), f"{sha256}  model.onnx\n".encode())
        return path
