"""``privadx edge``: the device agent of a site."""

from __future__ import annotations

import argparse
from pathlib import Path

from privadx.commands._common import positive_int
from privadx.commands._mqtt import add_mqtt_options, broker_from_args

HELP = "run a site's agent: train on local images when the gateway asks, keep the newest model"
DESCRIPTION = """\
Join a federation as one site. The agent announces itself, takes the current global model
(also when it joins late), trains on the site's own images whenever the gateway announces a
round, and sends back only its update (trained minus global weights), the number of images
and local metrics. It
holds part of its images back (--eval-fraction, stratified by class, or --eval-data) and
scores every new global model on them, sending the gateway a signed report of sums
(histograms, counts, losses) and logging the decision threshold its own images would choose.
No image ever leaves the device. It keeps the newest global weights and, at the end of a run, the
exported model.onnx in --model-dir, so `privadx diagnose` works at the site. It reconnects by
itself after a broker or network outage and never sends the same round twice.
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``edge``."""
    p = sub.add_parser(
        "edge",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_mqtt_options(p, broker_required=True)
    p.add_argument("--site-id", required=True, help="this site's identity (one topic level)")
    p.add_argument(
        "--data",
        required=True,
        help="local training images: class folder, CSV manifest (file,label) or .npz",
    )
    p.add_argument(
        "--model-dir",
        type=Path,
        default=Path("privadx-model"),
        help="where the newest models are kept (default: %(default)s)",
    )
    p.add_argument(
        "--once", action="store_true", help="exit when the run is finished and model.onnx is saved"
    )
    p.add_argument(
        "--threads", type=positive_int, default=1, help="TensorFlow threads for training"
    )
    p.add_argument(
        "--low-memory",
        action="store_true",
        help="train and evaluate in a child process each round, so TensorFlow does not stay "
        "in memory between rounds (for small devices; each round starts TensorFlow again)",
    )
    held = p.add_mutually_exclusive_group()
    held.add_argument(
        "--eval-fraction",
        type=float,
        default=0.2,
        help="share of each class of --data held out for federated evaluation, never "
        "trained on; 0 sends no evaluation reports (default: %(default)s)",
    )
    held.add_argument(
        "--eval-data",
        default=None,
        help="a separate folder, CSV manifest or .npz of evaluation images instead "
        "(every --data image is then trained on)",
    )
    p.set_defaults(subparser=p, run=run)


def run(args: argparse.Namespace) -> int:
    """Run the agent."""
    from edge.agent import EdgeAgent
    from edge.config import EdgeConfig
    from privadx.common.deps import ensure_installed

    ensure_installed("tensorflow")  # the agent trains at every round: say so now, not then

    broker, version = broker_from_args(args)
    config = EdgeConfig(
        broker=broker,
        mqtt_version=version,
        identity=args.identity,
        insecure=args.insecure,
        allow_unsigned=args.allow_unsigned,
        federation=args.federation,
        site_id=args.site_id,
        data=args.data,
        model_dir=args.model_dir,
        once=args.once,
        threads=args.threads,
        eval_fraction=args.eval_fraction,
        eval_data=args.eval_data,
        low_memory=args.low_memory,
    )
    return EdgeAgent(config).run()
