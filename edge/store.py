"""What an edge device keeps on disk: the newest global model, the ONNX model, its progress.

Files in the model folder, each written atomically (temporary file, fsync, rename):

- ``global.npz``: newest global weights (PrivaDx weights format, with the model spec);
- ``model.onnx`` and ``model.onnx.sha256``: the exported model for ``privadx diagnose``;
- ``model.onnx.manifest.json``: its manifest as signed by the gateway, and ``ca.pem``, the
  federation CA ``privadx diagnose`` checks that signature with;
- ``state.json``: the last round this site sent an update for, per run (so a restart never
  trains and sends the same round twice), and byte counters;
- ``outbox.pdx``: the last update sent (the signed envelope), kept so it can be sent again
  without retraining when the gateway announces its round again without it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from privadx.common.errors import DataError
from privadx.common.fileio import write_atomic
from privadx.common.trust.manifest import manifest_path
from privadx.common.weights_io import save_weights

ONNX_FILE = "model.onnx"

log = logging.getLogger(__name__)


class ModelStore:
    """The model folder of one site."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_path = self.root / "state.json"
        self.state: dict[str, Any] = self._load_state()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-writer")
        self._global_write: Future[None] | None = None

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

    def record_sent(self, envelope: bytes, run: str, round_num: int, announcement: str) -> None:
        """Keep the update just sent and mark its round submitted (one state write).

        ``announcement`` is the round announcement it was sent under.
        """
        write_atomic(self.root / "outbox.pdx", envelope)
        self.state["outbox"] = {"run": run, "round": round_num, "sent_under": [announcement]}
        self.mark_submitted(run, round_num)

    def outbox_for(self, run: str, round_num: int, announcement: str) -> bytes | None:
        """The kept update of ``round_num``, if it was not yet sent under ``announcement``."""
        box = self.state.get("outbox") or {}
        if box.get("run") != run or box.get("round") != round_num:
            return None
        if announcement in box.get("sent_under", []):
            return None
        try:
            return (self.root / "outbox.pdx").read_bytes()
        except OSError:
            return None

    def mark_resent(self, announcement: str) -> None:
        """Record that the kept update was sent under ``announcement``."""
        self.state["outbox"]["sent_under"].append(announcement)
        self.save_state()

    def save_global(self, weights: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Keep the newest global model, written in the background (in arrival order).

        The round's training need not wait for the disk: a crash before the write completes
        leaves the previous model, and the broker still holds the new one (retained).
        :meth:`flush` waits for the write.
        """
        self._global_write = self._writer.submit(self._write_global, weights, meta)

    def _write_global(self, weights: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        try:
            save_weights(self.root / "global.npz", weights, meta)
        except OSError as exc:  # a full disk must not stop the site
            log.error("could not keep the global model in %s: %s", self.root, exc)

    def flush(self) -> None:
        """Wait until the newest global model is on disk."""
        if self._global_write is not None:
            self._global_write.result()

    def save_onnx(
        self,
        data: bytes,
        sha256: str,
        *,
        manifest: dict[str, Any] | None = None,
        ca_pem: bytes | None = None,
    ) -> Path:
        """Keep the ONNX model (with its signed manifest and the CA that checks it).

        Raises:
            DataError: The model's hash differs from the announced one.
        """
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise DataError(f"received ONNX model has SHA-256 {actual}, announced {sha256}")
        path = self.root / ONNX_FILE
        if ca_pem is not None:
            write_atomic(self.root / "ca.pem", ca_pem)
        # The manifest first: a crash between the writes leaves a manifest that does not
        # match the old model (refused), never a new model without its manifest.
        if manifest is not None:
            write_atomic(
                manifest_path(path), json.dumps(manifest, indent=2, sort_keys=True).encode()
            )
        write_atomic(path, data)
        write_atomic(path.with_name(ONNX_FILE + ".sha256"), f"{sha256}  {ONNX_FILE}\n".encode())
        return path
