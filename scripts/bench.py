"""PrivaDx benchmark suite: every figure is a ratio measured side by side in the same run.

Sections (``--only`` picks some):

- ``aggregation``: the gateway's streaming weighted mean (gateway/streaming.py) over 10, 100
  and 1000 updates of a 2,000,000-value model, against ``np.stack`` + ``np.average`` and
  against the memory-bandwidth floor (one ``np.copyto`` of every update's bytes); time and
  peak memory (tracemalloc) of each.
- ``encodings``: bytes of one update message for each update encoding against the raw
  float32 size of the CNN's weights, and the protocol overhead (envelope, chunk headers,
  signature) against the raw tensor bytes.
- ``inference``: ONNX Runtime fp32 against Keras (``tf.function`` and ``model.predict``) per
  image at batch 1 and 32 for the CNN, and int8 against fp32.
- ``cold_start``: ``privadx diagnose`` on one image, process start to exit, against a
  minimal TensorFlow script that loads the same model as Keras and classifies the same image.
- ``round_overhead``: 10 and 50 edge agents over a real Mosquitto (mutual TLS, signed
  messages; the test harness's broker setup), 32 images each, 6 rounds without evaluation:
  the wall time of rounds 2 to 5 (start to next start) against local training time. The
  agents run as threads of one process and local training holds a process-wide lock, so
  training is serialized: the overhead is the round's wall time minus the sum of the sites'
  training times (with one device per site, as deployed, it would be minus the slowest one).
- ``encoding_accuracy``: PneumoniaMNIST, 10 agents over Mosquitto, 5 rounds x 1 local epoch,
  same split, with float32, float16 and int8 updates, three federation seeds each: final
  accuracy and AUC (mean over seeds, and per seed against float32) and update bytes per
  site and round.

Writes ``bench.json`` and ``bench.md`` to ``--out`` and prints the Markdown.

Usage: uv run python scripts/bench.py --out runs/bench
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the sections live in harness.bench

from harness.bench.federations import (  # noqa: E402
    encoding_accuracy,
    round_overhead,
)
from harness.bench.inference import cold_start, inference  # noqa: E402
from harness.bench.messages import aggregation, encodings  # noqa: E402
from harness.bench.report import markdown  # noqa: E402

SECTIONS = (
    "aggregation",
    "encodings",
    "inference",
    "cold_start",
    "round_overhead",
    "encoding_accuracy",
)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--updates", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--dataset", default="pneumoniamnist")
    p.add_argument("--out", type=Path, default=Path("runs/bench"))
    return p.parse_args()


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "aggregation" in args.only:
            report["aggregation"] = aggregation(args.updates)
        if "encodings" in args.only:
            report["encodings"] = encodings(args.dataset)
        if "inference" in args.only:
            report["inference"] = inference(args.dataset, work)
        if "cold_start" in args.only:
            report["cold_start"] = cold_start(args.dataset, work)
        if "round_overhead" in args.only:
            report["round_overhead"] = round_overhead(args.dataset, work)
        if "encoding_accuracy" in args.only:
            report["encoding_accuracy"] = encoding_accuracy(args.dataset, work)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    (args.out / "bench.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
