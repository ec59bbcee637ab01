"""The gateway's run state on disk, so a crash (even ``kill -9``) loses nothing.

``RUN_DIR/checkpoint/``::

    run.json                     the commit point: run id, completed rounds, their metrics
                                 records, the state file to load, the settings
    state-<round>.npz            global weights and the aggregator's and server optimizer's
                                 state after that round
    pending/round-<n>/<site>.npz every update accepted in the open round, written before the
                                 gateway counts it

Each file is written atomically (temporary file, fsync, rename, fsync of the folder). A round
is committed by rewriting ``run.json`` after its state file exists, so a crash at any point
leaves either the previous round's state or the new one, and the accepted updates of the
open round survive on disk until the round is committed. Arrays are stored as
:mod:`privadx.common.npz_file` containers, read without unpickling.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gateway.rounds import AcceptedUpdate
from privadx.common.errors import DataError, InputError
from privadx.common.fileio import fsync_dir, write_atomic
from privadx.common.npz_file import NpzFileError, load_npz_file, save_npz_file

log = logging.getLogger(__name__)

FORMAT = 2
"""2: pending updates hold ``trained - base`` (1 held trained weights; not resumed)."""
_META = "__meta__"


@dataclass
class Progress:
    """What a resumed gateway continues from."""

    round: int
    weights: dict[str, np.ndarray]
    server_state: list[np.ndarray]
    records: list[dict[str, Any]]
    pending: dict[str, AcceptedUpdate] = field(default_factory=dict)
    run_nonce: str = ""
    """The run's random value (empty in a checkpoint written before runs had one)."""


def _save_arrays(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    save_npz_file(path, arrays, meta, meta_key=_META)


def _load_arrays(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    try:
        return load_npz_file(path, meta_key=_META)
    except NpzFileError as exc:
        raise DataError(f"{path}: unreadable checkpoint file ({exc})") from exc


class RunCheckpoint:
    """The checkpoint folder of one gateway run."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.run_file = self.folder / "run.json"

    def existing_run_id(self) -> str | None:
        """The run id recorded here, if any."""
        return self._read_run().get("run_id") if self.run_file.exists() else None

    def _read_run(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.run_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{self.run_file}: unreadable checkpoint ({exc})") from exc
        if doc.get("format") != FORMAT:
            raise DataError(
                f"{self.run_file}: checkpoint format {doc.get('format')!r} is not this gateway's "
                f"({FORMAT}); resume the run with the PrivaDx that wrote it, or use another --out"
            )
        return dict(doc)

    # --- writing -------------------------------------------------------------------------
    def save_pending(self, round_num: int, update: AcceptedUpdate) -> None:
        """Persist an accepted update of the open round (before it is counted)."""
        meta = {"examples": update.examples, "metrics": update.metrics, "nbytes": update.nbytes}
        _save_arrays(self._pending_dir(round_num) / f"{update.site}.npz", update.update, meta)

    def commit_round(
        self,
        *,
        run_id: str,
        round_num: int,
        weights: dict[str, np.ndarray],
        server_state: list[np.ndarray],
        records: list[dict[str, Any]],
        settings: dict[str, Any],
        run_nonce: str = "",
    ) -> None:
        """Make ``round_num`` durable: its state file, then ``run.json`` pointing at it."""
        state_file = f"state-{round_num}.npz"
        arrays = {f"w/{k}": v for k, v in weights.items()}
        arrays.update({f"s/{i}": a for i, a in enumerate(server_state)})
        _save_arrays(
            self.folder / state_file,
            arrays,
            {"order": list(weights), "server_arrays": len(server_state)},
        )
        doc = {
            "format": FORMAT,
            "run_id": run_id,
            "round": round_num,
            "state_file": state_file,
            "records": records,
            "settings": settings,
            "run_nonce": run_nonce,
        }
        write_atomic(self.run_file, json.dumps(doc, indent=1, sort_keys=True).encode())
        self._clean(keep=state_file, open_round=round_num + 1)

    def _clean(self, *, keep: str, open_round: int) -> None:
        for old in self.folder.glob("state-*.npz"):
            if old.name != keep:
                old.unlink(missing_ok=True)
        for done in (self.folder / "pending").glob("round-*"):
            if done.name != f"round-{open_round}":
                shutil.rmtree(done, ignore_errors=True)
        fsync_dir(self.folder)

    def _pending_dir(self, round_num: int) -> Path:
        return self.folder / "pending" / f"round-{round_num}"

    # --- reading -------------------------------------------------------------------------
    def load(self, run_id: str, settings: dict[str, Any]) -> Progress | None:
        """The saved progress of ``run_id`` (``None`` for a fresh run folder).

        Raises:
            InputError: The folder holds another run, or this run with other settings.
        """
        if not self.run_file.exists():
            return None
        doc = self._read_run()
        if doc["run_id"] != run_id:
            raise InputError(
                f"{self.folder.parent} holds run {doc['run_id']}, not {run_id}: resume it "
                f"with --run-id {doc['run_id']}, or use another --out"
            )
        changed = sorted(k for k in settings if doc["settings"].get(k) != settings[k])
        if changed:
            raise InputError(
                f"run {run_id} cannot resume with changed settings: {', '.join(changed)}"
            )
        arrays, meta = _load_arrays(self.folder / doc["state_file"])
        round_num = int(doc["round"])
        return Progress(
            round=round_num,
            weights={k: arrays[f"w/{k}"] for k in meta["order"]},
            server_state=[arrays[f"s/{i}"] for i in range(int(meta["server_arrays"]))],
            records=list(doc["records"]),
            pending=self._pending(round_num + 1),
            run_nonce=str(doc.get("run_nonce") or ""),
        )

    def pending_update(self, round_num: int, site: str) -> dict[str, np.ndarray]:
        """One persisted update of the open round (``trained - base``; read back to aggregate).

        Raises:
            DataError: The file is missing or unreadable.
        """
        arrays, _ = _load_arrays(self._pending_dir(round_num) / f"{site}.npz")
        return arrays

    def _pending(self, round_num: int) -> dict[str, AcceptedUpdate]:
        updates = {}
        for path in sorted(self._pending_dir(round_num).glob("*.npz")):
            arrays, meta = _load_arrays(path)
            site = path.stem
            updates[site] = AcceptedUpdate(
                site, arrays, int(meta["examples"]), dict(meta["metrics"]), int(meta["nbytes"])
            )
        return updates
