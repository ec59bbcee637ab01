"""The run ids a gateway identity has signed, so that a fresh run cannot reuse one.

A captured update of an earlier run is already refused by the run's random value
(``privadx.common.wire.messages.RUN_NONCE``); refusing a reused run id as well keeps run folders,
logs and the sites' records unambiguous. The list lives beside the gateway's key
(``runs.json`` in its identity folder), so it is known wherever that identity signs. A resumed
run (its checkpoint in ``--out``) is the same run, not a reuse.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from privadx.common.errors import InputError
from privadx.common.fileio import write_atomic

log = logging.getLogger(__name__)

REGISTRY_FILE = "runs.json"


class RunRegistry:
    """The ``runs.json`` of one gateway identity folder."""

    def __init__(self, identity_dir: Path) -> None:
        self.path = Path(identity_dir) / REGISTRY_FILE

    def runs(self) -> dict[str, dict[str, str]]:
        """Run id -> when and where it started (an unreadable file counts as empty, logged)."""
        if not self.path.exists():
            return {}
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("%s is unreadable (%s); run ids used before are not known", self.path, exc)
            return {}
        return {str(k): dict(v) for k, v in doc.items()} if isinstance(doc, dict) else {}

    def claim(self, run_id: str, out: Path) -> None:
        """Record a fresh run's id.

        Raises:
            InputError: This identity started a run with that id before.
        """
        runs = self.runs()
        if run_id in runs:
            before = runs[run_id]
            raise InputError(
                f"run id {run_id!r} was started by this gateway before ({before.get('started')}, "
                f"in {before.get('out')}): a fresh run needs a new id (leave out --run-id for a "
                "random one); to continue that run, give its --out folder"
            )
        runs[run_id] = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "out": str(Path(out).resolve()),
        }
        try:
            write_atomic(self.path, json.dumps(runs, indent=1, sort_keys=True).encode())
        except OSError as exc:
            log.warning("could not record run id %s in %s: %s", run_id, self.path, exc)
