"""What personal heads gain each site, over finished simulation runs and their seeds.

For every run folder given (a ``privadx simulate`` run: ``config.json`` and ``weights.npz``,
e.g. the runs ``scripts/bench_quality.py`` leaves), the sites are dealt again exactly as the
run dealt them (same dataset, partition and held-out share), each site refits the final
model's classifier head to its training images (:mod:`models.personalise`, as
``privadx simulate --personalise`` does), and its held-out images are scored with the global
and with its own head. Runs are grouped by dataset and variant (the folders' names
``DATASET/VARIANT/seed-N``, as bench_quality writes them); each group's figures are a mean
and sample standard deviation over its seeds of the per-run mean gain across sites.

Writes ``personalise.json`` (every site of every run, and the groups) and ``personalise.md``.

Usage:
    uv run python scripts/bench_personalise.py runs/bench-quality/runs/*/*/seed-* \
        --out runs/bench-personalise
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # harness/ is beside scripts/

from harness.stats import mean_sd_text  # noqa: E402

log = logging.getLogger("bench_personalise")


def experiment_of(folder: Path) -> Any:
    """The run's data side (dataset, sites, held-out images), dealt as the run dealt it."""
    from models.spec import Architecture
    from privadx.common.data.partition import PartitionSpec, Scheme
    from tff_core.config import SimulationConfig
    from tff_core.experiment import prepare

    record = json.loads((folder / "config.json").read_text())
    part = record["partition"]
    config = SimulationConfig(
        dataset=record["dataset"],
        data_dir=Path(record["data_dir"]) if record.get("data_dir") else None,
        out=folder,
        partition=PartitionSpec(
            scheme=Scheme(part["scheme"]),
            sites=part["sites"],
            alpha=part["alpha"],
            seed=part["seed"],
            min_site_size=part["min_site_size"],
        ),
        eval_fraction=record["eval_fraction"],
        arch=Architecture(record["arch"]),
    )
    return prepare(config)


def personalise_run(folder: Path) -> dict[str, Any]:
    """The personalisation figures of one finished run."""
    from models.architectures import build_model
    from models.weights import set_weights
    from privadx.common.weights_io import load_weights
    from tff_core.simulation import personalise_sites

    exp = experiment_of(folder)
    model = build_model(exp.model_spec)
    weights, _ = load_weights(folder / "weights.npz")
    set_weights(model, weights)
    return personalise_sites(model, exp)


def group_of(folder: Path) -> tuple[str, str]:
    """``(dataset, variant)`` of a ``DATASET/VARIANT/seed-N`` folder."""
    return folder.parent.parent.name, folder.parent.name


COLUMNS = (
    ("held-out AUC, global head", "global_auc"),
    ("held-out AUC, own head", "personal_auc"),
    ("mean gain in AUC", "mean_gain_auc"),
    ("held-out accuracy, global head", "global_accuracy"),
    ("held-out accuracy, own head", "personal_accuracy"),
    ("mean gain in accuracy", "mean_gain_accuracy"),
)


def run_means(result: dict[str, Any]) -> dict[str, float | None]:
    """A run's figures: the mean over its sites of each head's figures, and the gains."""
    out: dict[str, float | None] = {}
    for key in ("global_auc", "personal_auc", "global_accuracy", "personal_accuracy"):
        values = [s[key] for s in result["sites"] if s[key] is not None]
        out[key] = sum(values) / len(values) if values else None
    out["mean_gain_auc"] = result["mean_gain_auc"]
    out["mean_gain_accuracy"] = result["mean_gain_accuracy"]
    return out


def table(runs: list[dict[str, Any]]) -> str:
    """One row per dataset and variant, each cell mean ± sd over its seeds."""
    names = (
        ["dataset", "variant", "seeds"]
        + [c for c, _ in COLUMNS]
        + ["sites better / worse in accuracy, all runs"]
    )
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    groups = dict.fromkeys((r["dataset"], r["variant"]) for r in runs)
    for dataset, variant in groups:
        mine = [r for r in runs if (r["dataset"], r["variant"]) == (dataset, variant)]
        cells = [dataset, variant, str(len(mine))]
        for _, key in COLUMNS:
            values = [r["means"][key] for r in mine if r["means"][key] is not None]
            cells.append(mean_sd_text(values, 4) if values else "-")
        better = sum(r["result"]["sites_better_accuracy"] for r in mine)
        worse = sum(r["result"]["sites_worse_accuracy"] for r in mine)
        cells.append(f"{better} / {worse}")
        lines.append("| " + " | ".join(cells) + " |")
    return (
        "\n".join(lines)
        + "\n\nEach site's held-out images (never trained on) scored with the federated model's "
        "head and with the head the site refit to its own training images; figures are the "
        "mean over a run's sites, then mean ± sample standard deviation over seeds "
        "(truncated). Accuracy at the argmax for both heads.\n"
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("runs", type=Path, nargs="+", help="simulation run folders")
    p.add_argument("--out", type=Path, default=Path("runs/bench-personalise"))
    args = p.parse_args(argv)
    missing = [f for f in args.runs if not (f / "config.json").is_file()]
    missing += [f for f in args.runs if not (f / "weights.npz").is_file()]
    if missing:
        log.error("not a finished simulation run (config.json and weights.npz): %s", missing[0])
        return 2
    runs = []
    for folder in args.runs:
        dataset, variant = group_of(folder)
        result = personalise_run(folder)
        means = run_means(result)
        log.info("%s: %s", folder, means)
        runs.append(
            {
                "folder": str(folder),
                "dataset": dataset,
                "variant": variant,
                "means": means,
                "result": result,
            }
        )
    args.out.mkdir(parents=True, exist_ok=True)
    markdown = table(runs)
    print(markdown)
    (args.out / "personalise.json").write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    (args.out / "personalise.md").write_text(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
