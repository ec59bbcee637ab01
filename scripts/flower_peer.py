"""The peer comparison's Flower side: the same model, split and local training with Flower.

Run by ``scripts/bench.py --only flower`` inside a separate environment that has ``flwr``
(never a PrivaDx dependency). It uses PrivaDx's own model builder, data split and local
training code, so the only difference from a PrivaDx run is the federation layer: Flower's
gRPC server (FedAvg weighted by examples, server-side evaluation on the test split after every
round, like the PrivaDx gateway) and one Flower client per site, as threads of one process
like the PrivaDx harness's edge agents.

Prints one JSON object: wall time per round, final accuracy and AUC.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--npz", type=Path, required=True)
    p.add_argument("--sites", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--local-epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    import flwr as fl
    import numpy as np

    from models.architectures import build_model
    from models.evaluate import choose_threshold, evaluate_split
    from models.settings import LocalTraining, local_seed, site_name
    from models.spec import ModelSpec
    from models.training import train_weights
    from models.weights import get_weights, set_weights
    from privadx.common.data.medmnist import load_npz
    from privadx.common.data.partition import PartitionSpec, partition
    from privadx.common.preprocess import PreprocessSpec

    args = parse_args()
    dataset = load_npz(args.npz)
    h, w, c = dataset.image_shape
    pre = PreprocessSpec(height=h, width=w, channels=c)
    spec = ModelSpec(height=h, width=w, channels=c, num_classes=len(dataset.class_names))
    parts = partition(
        dataset.train.labels, PartitionSpec(sites=args.sites, alpha=0.5, seed=args.seed)
    )
    sites = [dataset.train.subset(p) for p in parts]
    settings = LocalTraining(local_epochs=args.local_epochs)
    reference = build_model(spec, seed=args.seed)
    names = list(get_weights(reference))
    lock = threading.Lock()

    class Site(fl.client.NumPyClient):  # type: ignore[misc]
        def __init__(self, index: int) -> None:
            self.index = index
            self.model = build_model(spec, seed=args.seed)

        def fit(self, parameters: list[Any], config: dict[str, Any]) -> Any:
            with lock:
                first_fit[:] = first_fit or [time.monotonic()]
            seed = local_seed(args.seed, int(config["round"]), site_name(self.index))
            # The same training call as a PrivaDx edge agent's (it serialises trainings in
            # one process, as the PrivaDx harness does).
            weights, _ = train_weights(
                self.model,
                dict(zip(names, parameters, strict=True)),
                sites[self.index],
                pre,
                settings,
                seed=seed,
            )
            return [weights[n] for n in names], len(sites[self.index]), {}

    round_times: list[float] = []
    final: dict[str, Any] = {}
    first_fit: list[float] = []
    """When the first client started training: round 1 starts there (Flower evaluates round
    0 before its clients connect, and the clients build their models before connecting)."""
    marks: list[float] = []

    def evaluate(server_round: int, parameters: list[Any], config: dict[str, Any]) -> Any:
        if server_round == 0:
            return None
        marks[:] = marks or first_fit
        set_weights(reference, dict(zip(names, parameters, strict=True)))
        threshold = choose_threshold(reference, dataset.val, pre, 1)
        metrics = evaluate_split(
            reference, dataset.test, pre, positive_class=1, threshold=threshold
        )
        now = time.monotonic()
        round_times.append(now - marks[-1])
        marks.append(now)
        final.update(metrics)
        return float(1 - metrics["accuracy"]), {}

    strategy = fl.server.strategy.FedAvg(
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=args.sites,
        min_available_clients=args.sites,
        evaluate_fn=evaluate,
        on_fit_config_fn=lambda r: {"round": r},
        initial_parameters=fl.common.ndarrays_to_parameters(
            [get_weights(reference)[n] for n in names]
        ),
    )
    # Flower's client installs SIGINT/SIGTERM handlers, which Python allows in the main thread
    # only; its clients run as threads here (like PrivaDx's harness), so other threads skip it.
    import signal

    install = signal.signal
    signal.signal = lambda s, h: (  # type: ignore[assignment]
        install(s, h) if threading.current_thread() is threading.main_thread() else None
    )
    address = f"127.0.0.1:{free_port()}"
    threads = [
        threading.Thread(
            target=lambda i=i: fl.client.start_client(
                server_address=address, client=Site(i).to_client()
            ),
            daemon=True,
        )
        for i in range(args.sites)
    ]

    def start_sites() -> None:
        time.sleep(3)
        for t in threads:
            t.start()

    threading.Thread(target=start_sites, daemon=True).start()
    started = time.monotonic()
    fl.server.start_server(
        server_address=address,
        config=fl.server.ServerConfig(num_rounds=args.rounds),
        strategy=strategy,
    )
    print(
        json.dumps(
            {
                "flwr": fl.__version__,
                "round_seconds": round_times,
                "total_seconds": time.monotonic() - started,
                "accuracy": final.get("accuracy"),
                "auc": final.get("auc"),
                "sites": args.sites,
                "examples": [len(s) for s in sites],
            }
        )
    )
    _ = np
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
