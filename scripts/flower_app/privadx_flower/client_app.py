"""A site: PrivaDx's local training on its share of the split, one Flower message a round."""

from __future__ import annotations

import time

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from privadx_flower.task import PeerSpec

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the received model as a PrivaDx edge agent would, reply with the weights."""
    from models.settings import local_seed, site_name
    from models.training import train_weights
    from models.weights import get_weights

    started = time.monotonic()
    spec = PeerSpec.load(str(context.run_config["spec"]))
    index = int(context.node_config["partition-id"])
    site = spec.site(index)
    model = spec.model()
    names = list(get_weights(model))
    received = msg.content["arrays"].to_numpy_ndarrays()
    round_num = int(msg.content["config"]["server-round"])
    weights, info = train_weights(
        model,
        dict(zip(names, received, strict=True)),
        site,
        spec.preprocess,
        spec.local_training(),
        seed=local_seed(spec.seed, round_num, site_name(index)),
    )
    metrics = MetricRecord(
        {
            "num-examples": len(site),
            "train-seconds": float(info["train_seconds"]),
            # The ClientApp is a new process per message: this includes its start-up.
            "task-seconds": time.monotonic() - started,
        }
    )
    content = RecordDict({"arrays": ArrayRecord([weights[n] for n in names]), "metrics": metrics})
    return Message(content=content, reply_to=msg)
