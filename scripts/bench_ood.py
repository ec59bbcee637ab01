"""Out-of-distribution benchmark: how often diagnosis refuses a class, per kind of input.

For each model dataset and seed, the dataset is split across sites exactly as ``privadx
simulate`` splits it (Dirichlet label skew, 20% of each site held out) and the reference a
model would carry is built from the sites' sums (:func:`privadx.common.ood.reference_of_sites`:
the moments of the training images, the threshold at the 99th percentile of the held-out
images' distances). It then counts the images flagged as unlike the training images among:

- the dataset's own official test split (should be rare: the issue's target is <= 5%);
- every image of the other MedMNIST dataset (chest X-rays against breast ultrasound);
- ordinary photographs: scikit-image's 20 sample images and their quarter crops (100 inputs).

The reference needs no model (the embedding is model-free), so no training is run. Prints
the mean and standard deviation over seeds and writes ``results.json`` and ``table.md``.

Usage: uv run python scripts/bench_ood.py --out runs/bench-ood
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # harness/ is beside scripts/

from harness.stats import mean_sd  # noqa: E402

DATASETS = ("pneumoniamnist", "breastmnist")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--sites", type=int, default=10)
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=Path("runs/bench-ood"))
    return p.parse_args()


def flagged(reference: Any, images: np.ndarray) -> float:
    from privadx.common.ood import embed

    return float(reference.flags(embed(images))[1].mean())


def one_run(args: argparse.Namespace, dataset: str, seed: int) -> dict[str, Any]:
    from harness.photos import ordinary_photographs
    from privadx.common.data.medmnist import load_npz, resolve_dataset
    from privadx.common.data.partition import PartitionSpec
    from privadx.common.ood import reference_of_sites
    from privadx.common.preprocess import fit_images
    from tff_core.config import SimulationConfig
    from tff_core.experiment import prepare

    config = SimulationConfig(
        dataset=dataset,
        data_dir=args.data_dir,
        out=args.out,
        partition=PartitionSpec(sites=args.sites, alpha=args.alpha, seed=seed),
        seed=seed,
    )
    started = time.monotonic()
    exp = prepare(config)
    reference = reference_of_sites([s.images for s in exp.sites], [h.images for h in exp.held_out])
    if reference is None or reference.threshold is None:
        raise SystemExit(f"{dataset}, seed {seed}: no site has enough images for a reference")
    other_name = next(d for d in DATASETS if d != dataset)
    other = load_npz(resolve_dataset(other_name, args.data_dir))
    other_images = np.concatenate([other.train.images, other.val.images, other.test.images])
    photos, _ = ordinary_photographs(exp.preprocess)
    return {
        "dataset": dataset,
        "seed": seed,
        "training_images": reference.images,
        "held_out_images": reference.held_out,
        "threshold": reference.threshold,
        "own_test_flagged": flagged(reference, exp.dataset.test.images),
        "own_test_images": len(exp.dataset.test.images),
        "other_dataset": other_name,
        "other_flagged": flagged(reference, fit_images(other_images, exp.preprocess)),
        "other_images": len(other_images),
        "photos_flagged": flagged(reference, photos),
        "photos": len(photos),
        "seconds": round(time.monotonic() - started, 2),
    }


def table(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    from privadx.common.figures import truncate

    lines = [
        f"{args.sites} sites, Dirichlet({args.alpha}), 20% of each site held out, threshold at "
        f"the held-out 99th percentile; seeds {', '.join(map(str, args.seeds))} "
        "(share of inputs given no class, mean ± sd over seeds)\n",
        "| model trained on | own test split | the other dataset | photographs (100) |",
        "|---|---|---|---|",
    ]
    for dataset in DATASETS:
        runs = [r for r in results if r["dataset"] == dataset]
        cells = []
        for key in ("own_test_flagged", "other_flagged", "photos_flagged"):
            m, sd = mean_sd(r[key] for r in runs)
            cells.append(f"{truncate(m, 4)} ± {truncate(sd, 4)}")
        other = runs[0]["other_dataset"]
        lines.append(
            f"| {dataset} ({runs[0]['own_test_images']} test) | {cells[0]} | "
            f"{cells[1]} ({other}, {runs[0]['other_images']}) | {cells[2]} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = [one_run(args, d, s) for d in DATASETS for s in args.seeds]
    for r in results:
        print(
            f"{r['dataset']} seed {r['seed']}: threshold {r['threshold']:.2f}; flagged: own test "
            f"{r['own_test_flagged']:.4f}, {r['other_dataset']} {r['other_flagged']:.4f}, "
            f"photographs {r['photos_flagged']:.4f} ({r['seconds']} s)"
        )
    markdown = table(results, args)
    print(markdown)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "table.md").write_text(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
