"""``privadx gateway``: the aggregator service of a federation."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from privadx.commands._common import add_data_dir, positive_float, positive_int, print_json
from privadx.commands._mqtt import add_mqtt_options, broker_from_args
from privadx.commands._privacy import add_dp_options, dp_spec
from privadx.commands._training import (
    add_local_training_options,
    add_server_optimizer_options,
    local_training,
    server_optimizer,
)

HELP = "run the aggregator: announce rounds over MQTT, aggregate with TFF, publish the model"
DESCRIPTION = """\
Start a federated training run over MQTT. The gateway publishes the initial global model,
waits for --min-sites sites, then for each round announces the training settings and a
deadline, collects the sites' weights, aggregates them with the TFF-defined weighted mean and
server optimizer (the same computation as `privadx simulate`) and publishes the new model.

The gateway holds no image: the task (classes, input size, model) comes from --task, a file
written by `privadx task init`. Every site scores each new model on its own held-out images
and sends a signed report of sums (histograms, counts, losses); the gateway adds them up into
federated metrics (AUC with its 95% interval, the decision threshold at the best Youden J,
sensitivity, specificity, calibration error) and per-site figures. The final model's
threshold and calibration temperature come from that evaluation and are written into
model.onnx, which is exported after the last round and published to the sites. --eval-data
adds a score on a public benchmark the coordinating centre may hold, reported apart.
RUN_DIR gets metrics.jsonl, summary.json, curves.png, federated.png, weights.npz and
model.onnx.

Every accepted update and every finished round is written to RUN_DIR/checkpoint before it
counts. Started again on the same RUN_DIR after a crash (even kill -9), the gateway resumes
the run where it stopped: no accepted update is lost and no finished round is repeated.
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``gateway``."""
    p = sub.add_parser(
        "gateway",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_mqtt_options(p, broker_required=True)
    p.add_argument(
        "--task",
        type=Path,
        required=True,
        help="task file (TOML) from `privadx task init`: classes, input size, model",
    )
    p.add_argument(
        "--eval-data",
        default=None,
        help="optional public benchmark (MedMNIST name or .npz) also scored every round, "
        "reported apart from the federated evaluation; without it no image file is opened",
    )
    add_data_dir(p)
    p.add_argument("--rounds", type=positive_int, default=5)
    p.add_argument("--min-sites", type=positive_int, default=2, help="quorum of updates per round")
    p.add_argument("--round-timeout", type=positive_float, default=600.0, help="seconds per round")
    p.add_argument(
        "--start-timeout",
        type=positive_float,
        default=600.0,
        help="seconds to wait for --min-sites sites before round 1",
    )
    p.add_argument(
        "--eval-timeout",
        type=positive_float,
        default=None,
        help="seconds the sites have to report their evaluation of a new model "
        "(default: the round timeout)",
    )
    add_local_training_options(p)
    add_server_optimizer_options(p)
    p.add_argument(
        "--update-encoding",
        choices=("float32", "float16", "int8"),
        default="float32",
        help="how sites send updates: exact float32 weights, or the difference to the "
        "global model as float16 or int8 with a per-tensor scale",
    )
    p.add_argument(
        "--aggregation",
        choices=("norm-bound", "mean", "median", "trimmed-mean"),
        default=None,
        help="norm-bound: TFF's robust aggregator (adaptive zeroing and clipping of update "
        "norms, then the weighted mean); mean: plain FedAvg; median / trimmed-mean: "
        "coordinate-wise (default: norm-bound; mean with --secure-aggregation or DP)",
    )
    secure = p.add_argument_group(
        "secure aggregation",
        "Sites mask their clipped, quantized updates (Bonawitz et al. 2017) so the gateway and "
        "the broker see only their sum. Sites that drop out after sending are tolerated as "
        "long as a majority of the round's sites (and at least --secagg-threshold) remain.",
    )
    secure.add_argument(
        "--secure-aggregation", action="store_true", help="sum updates by secure aggregation"
    )
    secure.add_argument(
        "--secagg-clip",
        type=positive_float,
        default=10.0,
        help="L2 norm each site clips its update to before masking; with DP it is --dp-clip "
        "(default: %(default)s)",
    )
    secure.add_argument(
        "--secagg-bits",
        type=positive_int,
        default=16,
        help="quantization bits per coordinate (default: %(default)s)",
    )
    secure.add_argument(
        "--secagg-max-examples",
        type=positive_int,
        default=1 << 16,
        help="most training examples of all sites of a round together; fixes the modulus so "
        "the sum cannot wrap (default: %(default)s, modulus 2^32 with 16 bits)",
    )
    secure.add_argument(
        "--secagg-timeout",
        type=positive_float,
        default=120.0,
        help="seconds to wait for each secure-aggregation step (default: %(default)s)",
    )
    secure.add_argument(
        "--secagg-threshold",
        type=positive_int,
        default=2,
        help="least number of surviving sites needed to unmask (raised to a majority of the "
        "round's sites; default: %(default)s)",
    )
    p.add_argument(
        "--trim",
        type=float,
        default=0.1,
        help="fraction of values dropped at each end by trimmed-mean (default: %(default)s)",
    )
    p.add_argument(
        "--max-weight-ratio",
        type=float,
        default=10.0,
        help="cap each site's example count (its weight) at this multiple of the median of "
        "the other sites' counts, so no site's claim raises its own cap; 0 turns it off "
        "(default: %(default)s)",
    )
    add_dp_options(
        p,
        "The gateway clips every update and adds the noise (TFF's DP aggregator), or with "
        "--secure-aggregation the sites clip and the gateway adds the noise to the secure sum "
        "(needs --dp-fixed-clip). The accountant assumes every round uses --min-sites sites "
        "and claims no amplification by sampling.",
    )
    p.add_argument("--run-id", default=None, help="run identifier (default: from the time)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--out", type=Path, required=True, help="run folder to write")
    p.add_argument("--config", type=Path, default=None, help="TOML file with default settings")
    p.set_defaults(subparser=p, run=run)


def run(args: argparse.Namespace) -> int:
    """Run the gateway until the run is finished."""
    from gateway.checkpoint import RunCheckpoint
    from gateway.config import GatewayConfig, default_run_id
    from gateway.service import Gateway
    from models.optim import LrSchedule
    from privadx.common.task import TaskSpec
    from privadx.common.wire.secure import SecureSettings
    from privadx.common.wire.update_codec import Encoding
    from tff_core.robust import AggregationRule

    broker, version = broker_from_args(args)
    dp = dp_spec(args, sites_per_round=args.min_sites, sites=args.min_sites, rounds=args.rounds)
    # A run folder with a checkpoint continues its run (after a crash or kill -9).
    run_id = args.run_id or RunCheckpoint(args.out / "checkpoint").existing_run_id()
    config = GatewayConfig(
        broker=broker,
        mqtt_version=version,
        identity=args.identity,
        insecure=args.insecure,
        allow_unsigned=args.allow_unsigned,
        federation=args.federation,
        out=args.out,
        task=TaskSpec.load(args.task),
        eval_data=args.eval_data,
        data_dir=args.data_dir,
        run_id=run_id or default_run_id(),
        rounds=args.rounds,
        min_sites=args.min_sites,
        round_timeout=args.round_timeout,
        eval_timeout=args.eval_timeout,
        start_timeout=args.start_timeout,
        seed=args.seed,
        training=local_training(args, encoding=Encoding(args.update_encoding)),
        client_lr_schedule=LrSchedule(args.client_lr_schedule),
        server_optimizer=server_optimizer(args),
        aggregation=AggregationRule(
            args.aggregation or ("mean" if args.secure_aggregation or dp else "norm-bound")
        ),
        dp=dp,
        secure=SecureSettings(
            clip=dp.clip if dp else args.secagg_clip,
            weighted=dp is None,
            bits=args.secagg_bits,
            max_examples=args.secagg_max_examples,
            step_timeout=args.secagg_timeout,
            min_threshold=args.secagg_threshold,
        )
        if args.secure_aggregation
        else None,
        trim=args.trim,
        max_weight_ratio=args.max_weight_ratio,
    )
    summary = Gateway(config).run()
    if args.json:
        print_json(summary)
    else:
        print(_headline(summary, args.out))
    return 0


def _headline(summary: dict[str, Any], out: Path) -> str:
    fed = summary.get("federated") or {}
    parts = [f"run {summary['run']}: {summary['rounds']} rounds"]
    if fed:
        lo, hi = fed.get("auc_ci") or (float("nan"), float("nan"))
        parts.append(
            f"federated AUC {_num(fed.get('auc'))} (95% CI {_num(lo)}-{_num(hi)}) on "
            f"{fed['examples']} held-out images of {fed['sites_reported']} sites, "
            f"ECE {_num(fed.get('ece'))} -> {_num(fed.get('ece_calibrated'))} calibrated"
        )
    else:
        parts.append("no site reported an evaluation")
    if summary.get("benchmark"):
        test = summary.get("test") or {}
        parts.append(f"{summary['benchmark']} test AUC {_num(test.get('auc'))}")
    return "; ".join(parts) + f"; run folder {out}"


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "n/a"
