"""``privadx simulate``: federated averaging with TensorFlow Federated on simulated sites."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from models.settings import DEFAULT_SIMULATION_ROUNDS
from privadx.commands._common import add_data_dir, positive_float, positive_int, print_json
from privadx.commands._privacy import add_dp_options, dp_spec
from privadx.commands._training import (
    add_local_training_options,
    add_server_optimizer_options,
    client_optimizer,
    server_optimizer,
)

if TYPE_CHECKING:
    from tff_core.config import SimulationConfig

HELP = "train with federated averaging (TFF) on a dataset split across simulated sites"
DESCRIPTION = """\
Split a real dataset across N simulated hospital sites (IID or Dirichlet label skew), train
one classifier with TFF's weighted federated averaging, evaluate the global model after every
round on the official test split (binary tasks at the threshold chosen on the validation
split) and, as a deployed federation does, on each site's held-out images (--eval-fraction)
through the sites' evaluation reports (federated AUC, threshold, calibration), and write a
run folder: metrics.jsonl, summary.json, curves.png, weights.npz and the
exported model.onnx. --centralized adds the pooled-data baseline with the same model and
compute budget. Settings can also come from --config FILE.toml (keys = option names).
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``simulate``."""
    p = sub.add_parser(
        "simulate",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--dataset",
        default="pneumoniamnist",
        help="MedMNIST name (fetched if missing) or path to a .npz (default: %(default)s)",
    )
    add_data_dir(p)
    p.add_argument(
        "--sites", type=positive_int, default=10, help="simulated sites (default: %(default)s)"
    )
    p.add_argument("--partition", choices=("iid", "dirichlet"), default="dirichlet")
    p.add_argument(
        "--alpha",
        type=positive_float,
        default=0.5,
        help="Dirichlet concentration; smaller = more label skew (default: %(default)s)",
    )
    p.add_argument(
        "--rounds",
        type=positive_int,
        default=DEFAULT_SIMULATION_ROUNDS,
        help="federated rounds (default: %(default)s)",
    )
    p.add_argument(
        "--clients-per-round",
        type=positive_int,
        default=None,
        help="sites sampled per round (default: all)",
    )
    add_local_training_options(p)
    add_server_optimizer_options(p)
    p.add_argument(
        "--aggregation",
        choices=("norm-bound", "mean"),
        default="norm-bound",
        help="TFF model aggregator: robust_aggregator (adaptive zeroing and clipping of update "
        "norms) or the plain weighted mean (default: %(default)s)",
    )
    add_dp_options(p, "DP replaces --aggregation with TFF's DP aggregator.")
    p.add_argument(
        "--eval-fraction",
        type=float,
        default=0.2,
        help="share of each class of every site's images held out for federated evaluation, "
        "never trained on, as edge agents do (default: %(default)s)",
    )
    p.add_argument("--arch", choices=("cnn", "mobilenet"), default="cnn")
    p.add_argument(
        "--width-multiplier",
        type=positive_float,
        default=1.0,
        help="the model's channels times this, at most 4 (default: %(default)s)",
    )
    p.add_argument(
        "--centralized",
        action="store_true",
        help="also train the centralized baseline (same model, same compute)",
    )
    p.add_argument(
        "--personalise",
        action="store_true",
        help="after training, each site refits the classifier head to its own images; "
        "report every site's held-out AUC and accuracy with the global and its own head",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--no-export",
        dest="export_onnx",
        action="store_false",
        help="skip the ONNX export at the end",
    )
    p.add_argument("--config", type=Path, default=None, help="TOML file with default settings")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--out", type=Path, required=True, help="run folder to write")
    p.set_defaults(subparser=p, run=run)


def build_config(args: argparse.Namespace) -> SimulationConfig:
    """The typed simulation config for parsed arguments."""
    from models.augment import Augmentation
    from models.optim import LrSchedule
    from models.spec import Architecture
    from privadx.common.data.partition import PartitionSpec, Scheme
    from tff_core.config import SimulationConfig
    from tff_core.robust import AggregationRule

    return SimulationConfig(
        dataset=args.dataset,
        data_dir=args.data_dir,
        out=args.out,
        partition=PartitionSpec(
            scheme=Scheme(args.partition), sites=args.sites, alpha=args.alpha, seed=args.seed
        ),
        rounds=args.rounds,
        local_epochs=args.local_epochs,
        min_local_steps=args.min_local_steps,
        proximal_mu=args.proximal_mu,
        logit_adjust=args.logit_adjust,
        augmentation=Augmentation(args.augment),
        clients_per_round=args.clients_per_round,
        batch_size=args.batch_size,
        client_optimizer=client_optimizer(args),
        client_lr_schedule=LrSchedule(args.client_lr_schedule),
        server_optimizer=server_optimizer(args),
        aggregation=AggregationRule(args.aggregation),
        dp=dp_spec(
            args,
            sites_per_round=args.clients_per_round or args.sites,
            sites=args.sites,
            rounds=args.rounds,
        ),
        arch=Architecture(args.arch),
        width_multiplier=args.width_multiplier,
        seed=args.seed,
        eval_fraction=args.eval_fraction,
        centralized=args.centralized,
        personalise=args.personalise,
        export_onnx=args.export_onnx,
    )


def run(args: argparse.Namespace) -> int:
    """Run the simulation and print its summary."""
    config = build_config(args)
    from tff_core.simulation import run_simulation

    summary = run_simulation(config)
    if args.json:
        print_json(summary)
        return 0
    print(format_summary(summary, args.out))
    return 0


def format_summary(summary: dict, out: Path) -> str:
    """Human-readable lines for a run summary."""

    def line(label: str, m: dict) -> str:
        return (
            f"{label:<12} AUC {m['auc']:.4f}  accuracy {m['accuracy']:.4f}  "
            f"sensitivity {m['sensitivity']:.4f}  specificity {m['specificity']:.4f}"
        )

    lines = [
        f"{summary['dataset']}: {summary['num_sites']} sites, {summary['rounds']} rounds, "
        f"{summary['seconds']:.0f} s"
    ]
    lines.append(line("federated", summary))
    fed = summary.get("federated")
    if fed:
        lo, hi = fed["auc_ci"] or (float("nan"), float("nan"))
        lines.append(
            f"{'':<12} on the sites' {fed['examples']} held-out images: federated AUC "
            f"{fed['auc']:.4f} (95% CI {lo:.4f}-{hi:.4f}), ECE {fed['ece']:.4f} -> "
            f"{fed['ece_calibrated']:.4f} at temperature {fed['temperature']:.3f}"
        )
    if "centralized" in summary:
        lines.append(line("centralized", summary["centralized"]))
    lines.append(f"run folder: {out}")
    return "\n".join(lines)
