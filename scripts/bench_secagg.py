"""Secure aggregation cost benchmark: what masking costs a site and the gateway per round.

Two parts, each reported as ratios measured side by side in the same run:

1. ``compute``: the protocol's cryptography in process for N sites and the real model size
   (the CNN's 72,146 values), with 30% of the sites dropping either after sending their
   masked input (the gateway removes their self-masks) or before it (the gateway recovers
   their mask keys and regenerates every pairwise mask they share with a survivor, the
   expensive case): a site's time for its steps (key shares, masking, unmasking answer) and
   the gateway's unmasking time, against the time to add N plain float32 updates.
2. ``federation``: PneumoniaMNIST over a real Mosquitto with mutual TLS and signed messages
   (the test harness's broker setup), 10 edge agents, the same seed and settings with plain
   FedAvg and with secure aggregation: round wall time, bytes each site sent and received
   per round (edge byte counters, everything on the wire: envelopes, chunk headers,
   signatures, model downloads).

Usage: uv run python scripts/bench_secagg.py --out runs/bench-secagg
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # harness/ starts the benchmark's broker

from bench import trunc  # noqa: E402  (scripts/ is on the path: this script's folder)

log = logging.getLogger("bench_secagg")

MODEL_VALUES = 72_146
"""Values of the CNN on 28x28x1 images with two classes (models/architectures.py)."""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sites", type=int, nargs="+", default=[10, 50, 100])
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--federation-sites", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--skip-federation", action="store_true")
    p.add_argument("--out", type=Path, default=Path("runs/bench-secagg"))
    return p.parse_args()


def compute(n: int, dropout: float, when: str) -> dict[str, Any]:
    """Time one secure round's cryptography for ``n`` sites.

    ``when`` is ``"after"`` or ``"before"``: whether the dropped sites sent their masked input.
    """
    from privadx.common.secagg.protocol import SecAggClient, SecAggServer
    from privadx.common.secagg.quantize import QuantSpec, quantize
    from privadx.common.wire.secure import SecureSettings

    spec = QuantSpec(clip=10.0, bits=16, max_weight=1 << 16)
    t = SecureSettings().threshold(n)
    names = [f"site-{i:03d}" for i in range(n)]
    clients = {s: SecAggClient(s, "run", 1, t, spec.modulus_bits) for s in names}
    rng = np.random.default_rng(0)
    updates = {s: rng.normal(scale=0.01, size=MODEL_VALUES) for s in names}
    ads = {s: c.advertise() for s, c in clients.items()}
    site_seconds: dict[str, float] = dict.fromkeys(names, 0.0)

    def timed(site: str, fn: Any, *a: Any) -> Any:
        t0 = time.perf_counter()
        out = fn(*a)
        site_seconds[site] += time.perf_counter() - t0
        return out

    shares = {s: timed(s, clients[s].share_keys, ads) for s in names}
    inputs = {}
    for s in names:
        timed(s, clients[s].receive_shares, {p: shares[p][s] for p in names})
        inputs[s] = timed(s, lambda u: quantize(u, spec, rng, weight=100), updates[s])
    dropped = set(names[: round(dropout * n)])
    masked = {
        s: timed(s, clients[s].masked_input, inputs[s], names)
        for s in names
        if when == "after" or s not in dropped
    }
    u3 = sorted(masked)
    answers = {s: timed(s, clients[s].unmask, u3) for s in names if s not in dropped}
    server = SecAggServer(t, spec.modulus_bits, MODEL_VALUES + 1)
    server.advertised = ads
    t0 = time.perf_counter()
    total = server.unmask(masked, names, dict(sorted(answers.items())[:t]))
    gateway_seconds = time.perf_counter() - t0
    plain = [updates[s].astype(np.float32) for s in names]
    t0 = time.perf_counter()
    for _ in range(5):
        np.sum(np.stack(plain), axis=0)
    plain_seconds = (time.perf_counter() - t0) / 5
    assert int(total[-1]) == 100 * len(u3)  # the sum is right (every weight 100)
    per_site = statistics.median(site_seconds.values())
    return {
        "sites": n,
        "threshold": t,
        "dropped": len(dropped),
        "dropped_when": when,
        "site_seconds_median": per_site,
        "gateway_unmask_seconds": gateway_seconds,
        "plain_sum_seconds": plain_seconds,
        "gateway_vs_plain_sum": gateway_seconds / plain_seconds,
    }


def federation(sites: int, rounds: int) -> dict[str, Any]:
    """Plain and secure runs of the same federation over Mosquitto; per-round costs."""
    from harness.federation import run_federation, split_sites, start_broker
    from privadx.common.data.medmnist import resolve_dataset
    from privadx.common.wire.secure import SecureSettings
    from tff_core.robust import AggregationRule

    npz = resolve_dataset("pneumoniamnist", None)
    parts = split_sites(npz, sites, alpha=0.5, seed=0)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        broker = start_broker(root / "broker", sites)
        try:
            for mode, extra in (("plain", {}), ("secure", {"secure": SecureSettings()})):
                (root / mode).mkdir()
                result = run_federation(
                    broker,
                    root / mode,
                    parts,
                    federation=mode,
                    dataset=str(npz),
                    rounds=rounds,
                    seed=0,
                    aggregation=AggregationRule.MEAN,
                    export_onnx=False,
                    **extra,
                )
                records = [
                    json.loads(line)
                    for line in (result.out / "metrics.jsonl").read_text().splitlines()
                ]
                states = [json.loads((d / "state.json").read_text()) for d in result.site_dirs]
                sent = [s["bytes_sent"] / rounds for s in states]
                received = [s["bytes_received"] / rounds for s in states]
                training = [
                    max(m["seconds"] for m in r["site_metrics"].values())
                    for r in records
                    if "site_metrics" in r
                ]
                results[mode] = {
                    "round_seconds": [r["seconds"] for r in records],
                    "slowest_training_seconds": training,
                    "bytes_sent_per_site_round": statistics.median(sent),
                    "bytes_received_per_site_round": statistics.median(received),
                    "accuracy": result.summary["accuracy"],
                    "auc": result.summary["auc"],
                    "step_seconds": [
                        r["secure_aggregation"]["step_seconds"]
                        for r in records
                        if "secure_aggregation" in r
                    ],
                }
        finally:
            broker.stop()
    p, s = results["plain"], results["secure"]
    results["ratios"] = {
        "round_seconds": statistics.mean(s["round_seconds"]) / statistics.mean(p["round_seconds"]),
        "bytes_sent": s["bytes_sent_per_site_round"] / p["bytes_sent_per_site_round"],
        "bytes_received": s["bytes_received_per_site_round"] / p["bytes_received_per_site_round"],
    }
    return results


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| sites | t | dropped (masked input) | site crypto s (median) | gateway unmask s | "
        "plain sum s | gateway / plain |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in report["compute"]:
        lines.append(
            f"| {c['sites']} | {c['threshold']} | {c['dropped']} ({c['dropped_when']}) | "
            f"{trunc(c['site_seconds_median'], 3)} | {trunc(c['gateway_unmask_seconds'], 3)} | "
            f"{trunc(c['plain_sum_seconds'], 4)} | {trunc(c['gateway_vs_plain_sum'], 1)}x |"
        )
    fed = report.get("federation")
    if fed:
        p, s, r = fed["plain"], fed["secure"], fed["ratios"]
        lines += [
            "",
            "| per round, per site | plain | secure | secure / plain |",
            "|---|---|---|---|",
            f"| round wall time (s, mean) | {trunc(statistics.mean(p['round_seconds']), 1)} | "
            f"{trunc(statistics.mean(s['round_seconds']), 1)} | {trunc(r['round_seconds'], 2)} |",
            f"| bytes sent (median site) | {int(p['bytes_sent_per_site_round']):,} | "
            f"{int(s['bytes_sent_per_site_round']):,} | {trunc(r['bytes_sent'], 2)} |",
            f"| bytes received (median site) | {int(p['bytes_received_per_site_round']):,} | "
            f"{int(s['bytes_received_per_site_round']):,} | {trunc(r['bytes_received'], 2)} |",
            f"| final accuracy / AUC | {trunc(p['accuracy'], 4)} / {trunc(p['auc'], 4)} | "
            f"{trunc(s['accuracy'], 4)} / {trunc(s['auc'], 4)} | |",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    report: dict[str, Any] = {"model_values": MODEL_VALUES, "dropout": args.dropout}
    report["compute"] = [
        compute(n, args.dropout, when) for when in ("after", "before") for n in args.sites
    ]
    if not args.skip_federation:
        report["federation"] = federation(args.federation_sites, args.rounds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "secagg.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    (args.out / "secagg.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
