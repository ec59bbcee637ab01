"""What summing the evaluation reports securely costs a round: seconds after the round closes.

Runs a secure-aggregation federation of BreastMNIST sites (in-process edge agents, a local
Mosquitto) and prints, per round, the round's seconds, how long after the round closed its
model's secure evaluation closed, the seconds of each evaluation step, and who reported.

Usage: ``python scripts/bench_secure_eval.py [--sites 4] [--rounds 3] [--json out.json]``
(needs the mosquitto binary and the real MedMNIST files, as the tests do).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", type=Path, default=None, help="breastmnist.npz")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()

    from harness.federation import federate, split_sites
    from privadx.common.data.medmnist import resolve_dataset
    from privadx.common.wire.secure import SecureSettings
    from tff_core.robust import AggregationRule

    data = args.data or resolve_dataset("breastmnist")
    sites = split_sites(data, args.sites, alpha=100.0, seed=0)
    result = federate(
        Path(tempfile.mkdtemp(prefix="bench-secure-eval-")),
        sites,
        dataset=str(data),
        rounds=args.rounds,
        seed=0,
        aggregation=AggregationRule.MEAN,
        secure=SecureSettings(clip=10.0, step_timeout=30.0),
        export_onnx=False,
    )
    rounds: list[dict[str, Any]] = []
    for line in (result.out / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        ev = r.get("evaluation") or {}
        rounds.append(
            {
                "round": r["round"],
                "round_seconds": r["seconds"],
                "evaluation_after_round_seconds": round(ev["closed_at"] - r["closed_at"], 3),
                "evaluation_steps": (ev.get("secure_aggregation") or {}).get("step_seconds"),
                "sites_reported": len(ev.get("sites_reported", [])),
                "federated_auc": (r.get("federated") or {}).get("auc"),
            }
        )
    later = [r["evaluation_after_round_seconds"] for r in rounds[1:]] or [
        rounds[0]["evaluation_after_round_seconds"]
    ]
    out = {
        "sites": args.sites,
        "rounds": rounds,
        "evaluation_after_round_seconds_median": statistics.median(later),
        "note": "round 1 includes TensorFlow start-up at the sites; the median is of rounds 2+",
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
