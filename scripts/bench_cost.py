"""Cost benchmark: what a site's round and a simulation cost as models, images and sites grow.

1. **A site's local round**, for the CNN and the MobileNet-style model at 28, 64, 128 and
   224 px inputs. The images are PneumoniaMNIST's 28 px training images upsampled
   (bilinear) to the size: the content stays 28 px, so these rows measure cost, not the
   accuracy larger scans would give. Each (model, size) runs in a fresh child process with
   the device's code path (``models.training.train_weights``): one round of
   ``--epochs`` epoch(s) over ``--images`` images, batch 32, Adam. Reported: the first round
   (building and tracing the training step included) and the median of the next rounds, the
   child's peak RSS, the parameter count, the float32 update message's bytes as a device
   sends it (signed envelope), and ONNX Runtime's latency for one image.
2. **A simulation's wall time** for 10, 100 and 1,000 sites (``privadx simulate``,
   PneumoniaMNIST, IID split so 1,000 sites each hold 4-5 images, ``--rounds`` rounds of 1
   local epoch with no minimum step count, so the rows show how the per-site overhead
   grows; no pooled baseline, no export): seconds per round (median) and the process's
   peak RSS.

Writes ``results.json`` and ``table.md`` in ``--out``. Run it on an otherwise idle machine:
the figures are times.

Usage: uv run python scripts/bench_cost.py --out runs/bench-cost
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # harness/ is beside scripts/

from privadx.common.figures import truncate  # noqa: E402

log = logging.getLogger("bench_cost")

ARCHS = ("cnn", "mobilenet")
SIZES = (28, 64, 128, 224)
SITE_COUNTS = (10, 100, 1000)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--images", type=int, default=256, help="images of the site (default: 256)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3, help="rounds per measurement (default: 3)")
    p.add_argument("--archs", nargs="+", choices=ARCHS, default=list(ARCHS))
    p.add_argument(
        "--width-multiplier",
        type=float,
        default=1.0,
        help="the models' channels times this (default: 1; e.g. 1.5 for a wider CNN)",
    )
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    p.add_argument("--sites", type=int, nargs="+", default=list(SITE_COUNTS))
    p.add_argument("--skip-rounds", action="store_true", help="skip the local-round part")
    p.add_argument("--skip-simulation", action="store_true", help="skip the simulation part")
    p.add_argument("--out", type=Path, default=Path("runs/bench-cost"))
    p.add_argument("--child", nargs=2, metavar=("ARCH", "SIZE"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def child_round(args: argparse.Namespace, arch: str, size: int) -> dict[str, Any]:
    """In the child: train ``--rounds`` rounds as a device would; print the figures."""
    import resource

    import numpy as np

    from edge.onnx_model import OnnxClassifier
    from models.architectures import build_model
    from models.onnx_export import export_onnx
    from models.settings import LocalTraining
    from models.spec import Architecture, ModelSpec
    from models.training import train_weights
    from models.weights import get_weights
    from privadx.common.data.arrays import LabeledImages
    from privadx.common.data.medmnist import load_npz, resolve_dataset
    from privadx.common.model_info import ModelInfo
    from privadx.common.preprocess import PreprocessSpec, fit_images
    from privadx.common.wire.envelope import to_bytes
    from privadx.common.wire.messages import update_envelope
    from privadx.common.wire.update_codec import Encoding, model_update

    data = load_npz(resolve_dataset("pneumoniamnist", args.data_dir)).train
    pre = PreprocessSpec(height=size, width=size, channels=1)
    chosen = data.subset(list(range(args.images)))
    site = LabeledImages(fit_images(chosen.images, pre), chosen.labels, chosen.class_names)
    spec = ModelSpec(
        arch=Architecture(arch), height=size, width=size, width_multiplier=args.width_multiplier
    )
    model = build_model(spec, seed=0)
    weights = get_weights(model)
    settings = LocalTraining(local_epochs=args.epochs)
    seconds = []
    trained = weights
    for r in range(args.rounds):
        t0 = time.monotonic()
        trained, _ = train_weights(model, weights, site, pre, settings, seed=r)
        seconds.append(time.monotonic() - t0)
    env = update_envelope(
        run="bench",
        round_num=1,
        site="site-0",
        update=model_update(trained, weights),
        encoding=Encoding.FLOAT32,
        examples=len(site),
        metrics={},
        base_model="0" * 64,
        run_nonce="0" * 32,
    )
    info = ModelInfo(
        model_spec=spec, preprocess=pre, class_names=data.class_names, positive_class=1
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(model, info.to_meta(), path)
        onnx = OnnxClassifier(path)
        one = site.images[:1]
        for _ in range(5):
            onnx.logits(one)
        times = []
        for _ in range(50):
            t0 = time.perf_counter()
            onnx.logits(one)
            times.append(time.perf_counter() - t0)
        onnx_bytes = path.stat().st_size
    return {
        "arch": arch if args.width_multiplier == 1 else f"{arch} x{args.width_multiplier:g}",
        "size": size,
        "images": len(site),
        "epochs": args.epochs,
        "parameters": int(sum(np.asarray(w).size for w in weights.values())),
        "first_round_s": seconds[0],
        "round_s_median": statistics.median(seconds[1:]) if len(seconds) > 1 else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "update_message_bytes": len(to_bytes(env)),
        "onnx_bytes": onnx_bytes,
        "onnx_latency_ms_median": statistics.median(times) * 1e3,
    }


def local_rounds(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for arch in args.archs:
        for size in args.sizes:
            cmd = [sys.executable, __file__, "--child", arch, str(size)]
            cmd += ["--images", str(args.images), "--epochs", str(args.epochs)]
            cmd += ["--rounds", str(args.rounds), "--width-multiplier", str(args.width_multiplier)]
            if args.data_dir is not None:
                cmd += ["--data-dir", str(args.data_dir)]
            log.info("local round: %s at %d px", arch, size)
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
            if done.returncode != 0:
                log.error("%s at %d px failed:\n%s", arch, size, done.stderr[-2000:])
                rows.append({"arch": arch, "size": size, "error": done.stderr[-500:]})
                continue
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return rows


def simulations(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for sites in args.sites:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "run"
            cmd = [sys.executable, "-m", "privadx", "simulate", "--dataset", "pneumoniamnist"]
            if args.data_dir is not None:
                cmd += ["--data-dir", str(args.data_dir)]
            cmd += ["--sites", str(sites), "--partition", "iid", "--rounds", str(args.rounds)]
            cmd += ["--local-epochs", "1", "--min-local-steps", "0"]
            cmd += ["--no-export", "--json", "--out", str(out)]
            log.info("simulation: %d sites", sites)
            started = time.monotonic()
            with open(Path(tmp) / "run.log", "w+b") as errors:
                child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors, cwd=ROOT)
                assert child.stdout is not None
                stdout = child.stdout.read()
                _, status, usage = os.wait4(child.pid, 0)
                child.returncode = os.waitstatus_to_exitcode(status)
                wall = time.monotonic() - started
                errors.seek(0)
                stderr = errors.read().decode(errors="replace")
            if child.returncode != 0:
                log.error("%d sites failed:\n%s", sites, stderr[-2000:])
                rows.append({"sites": sites, "error": stderr[-500:]})
                continue
            summary = json.loads(stdout)
            records = [
                json.loads(line)
                for line in (out / "metrics.jsonl").read_text().splitlines()
                if '"series": "federated"' in line
            ]
            per_round = [r["seconds"] for r in records]
            rows.append(
                {
                    "sites": sites,
                    "rounds": len(per_round),
                    "round_s_median": statistics.median(per_round),
                    "round_s": per_round,
                    "federated_s": summary["seconds"],
                    "federated_cpu_s": summary.get("cpu_seconds"),
                    "command_wall_s": wall,
                    "peak_rss_mb": usage.ru_maxrss / 1024,
                    "auc": summary["auc"],
                }
            )
    return rows


def table(report: dict[str, Any]) -> str:
    lines = []
    if report.get("local_rounds"):
        lines += [
            "| model | input px | parameters | first round s | later rounds s (median) | "
            "peak RSS MB | update message bytes | ONNX ms / image |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in report["local_rounds"]:
            if "error" in r:
                lines.append(f"| {r['arch']} | {r['size']} | failed: see results.json | | | | | |")
                continue
            later = r["round_s_median"]
            lines.append(
                f"| {r['arch']} | {r['size']} | {r['parameters']:,} | "
                f"{truncate(r['first_round_s'], 2)} | "
                f"{truncate(later, 2) if later is not None else '-'} | "
                f"{truncate(r['peak_rss_mb'], 1)} | {r['update_message_bytes']:,} | "
                f"{truncate(r['onnx_latency_ms_median'], 3)} |"
            )
        first = report["local_rounds"][0]
        lines.append(
            f"\nOne site, {first.get('images')} PneumoniaMNIST images upsampled from 28 px, "
            f"{first.get('epochs')} epoch(s) per round, batch 32, Adam; a fresh process per row.\n"
        )
    if report.get("simulations"):
        lines += [
            "| sites | rounds | seconds per round (median) | federated s | CPU s | "
            "peak RSS MB | test AUC |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in report["simulations"]:
            if "error" in r:
                lines.append(f"| {r['sites']} | failed: see results.json | | | | | |")
                continue
            cpu = r["federated_cpu_s"]
            lines.append(
                f"| {r['sites']} | {r['rounds']} | {truncate(r['round_s_median'], 2)} | "
                f"{truncate(r['federated_s'], 1)} | "
                f"{truncate(cpu, 1) if cpu is not None else '-'} | "
                f"{truncate(r['peak_rss_mb'], 1)} | {truncate(r['auc'], 4)} |"
            )
        lines.append(
            "\n`privadx simulate`, PneumoniaMNIST split IID, 1 local epoch per round "
            "(no minimum step count), every site in every round, no pooled baseline, no export.\n"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        arch, size = args.child[0], int(args.child[1])
        print(json.dumps(child_round(args, arch, size)))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {}
    if not args.skip_rounds:
        report["local_rounds"] = local_rounds(args)
    if not args.skip_simulation:
        report["simulations"] = simulations(args)
    markdown = table(report)
    print(markdown)
    (args.out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "table.md").write_text(markdown)
    failed = [r for rows in report.values() for r in rows if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
