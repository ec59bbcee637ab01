"""The server: Flower's FedAvg (weighted by examples) and PrivaDx's evaluation every round.

After each round the global model is scored on the dataset's test split at the validation
split's threshold, as the PrivaDx gateway scores its public benchmark. Writes the run's
timings and metrics to the JSON file the spec names.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from privadx_flower.task import PeerSpec

app = ServerApp()

NODES_TIMEOUT = 300.0


@app.main()
def main(grid: Grid, context: Context) -> None:
    from models.evaluate import evaluate_model
    from models.weights import get_weights, set_weights

    spec = PeerSpec.load(str(context.run_config["spec"]))
    launched = time.time()
    deadline = time.monotonic() + NODES_TIMEOUT
    while len(list(grid.get_node_ids())) < spec.sites:  # every site first, as the gateway
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {spec.sites} SuperNodes after {NODES_TIMEOUT} s")
        time.sleep(0.2)
    model = spec.model()
    names = list(get_weights(model))
    marks: list[float] = []
    rounds: list[dict[str, Any]] = []

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        if server_round == 0:
            marks.append(time.time())  # round 1 starts when this returns
            return None
        set_weights(model, dict(zip(names, arrays.to_numpy_ndarrays(), strict=True)))
        metrics = evaluate_model(model, spec.dataset, spec.preprocess, positive_class=1)
        now = time.time()
        rounds.append(
            {
                "round": server_round,
                "seconds": now - marks[-1],
                "accuracy": float(metrics["accuracy"]),
                "auc": float(metrics["auc"]),
            }
        )
        marks.append(now)
        return MetricRecord({"accuracy": rounds[-1]["accuracy"], "auc": rounds[-1]["auc"]})

    strategy = FedAvg(
        fraction_train=1.0,
        fraction_evaluate=0.0,  # evaluation is the server's, as in the PrivaDx run
        min_train_nodes=spec.sites,
        min_available_nodes=spec.sites,
    )
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord([get_weights(model)[n] for n in names]),
        num_rounds=spec.rounds,
        train_config=ConfigRecord({}),
        evaluate_fn=evaluate,
    )
    train_metrics = {str(r): dict(m) for r, m in result.train_metrics_clientapp.items()}
    out = Path(spec.out)
    out.with_suffix(".tmp").write_text(
        json.dumps(
            {
                "launched_at": launched,
                "first_round_at": marks[0],
                "finished_at": time.time(),
                "rounds": rounds,
                "train_metrics": train_metrics,
            }
        )
    )
    out.with_suffix(".tmp").replace(out)  # whole, so the driver never reads half a file
