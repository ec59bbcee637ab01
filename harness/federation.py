"""Run a gateway (main thread) and edge agents (threads) against a test Mosquitto."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edge.agent import EdgeAgent
from edge.config import EdgeConfig
from gateway.config import GatewayConfig
from gateway.service import Gateway
from harness.mosquitto import GATEWAY_USER, Mosquitto
from models.settings import site_name
from privadx.common.data.arrays import LabeledImages
from privadx.common.data.local import save_site_npz
from privadx.common.evaluation.holdout import DEFAULT_EVAL_FRACTION, split_holdout
from privadx.common.mqtt_link import BrokerAddress
from privadx.common.task import TaskSpec, task_from_dataset


@dataclass
class FederationResult:
    """Where a run wrote its results, its summary and each site's model folder."""

    out: Path
    summary: dict[str, Any]
    site_dirs: list[Path]


def split_sites(npz: Path, count: int, *, alpha: float, seed: int) -> list[LabeledImages]:
    """The training split of a real dataset dealt to ``count`` sites (Dirichlet label skew)."""
    from privadx.common.data.medmnist import load_npz
    from privadx.common.data.partition import PartitionSpec, partition

    train = load_npz(npz).train
    spec = PartitionSpec(sites=count, alpha=alpha, seed=seed)
    return [train.subset(p) for p in partition(train.labels, spec)]


def training_parts(
    sites: list[LabeledImages], fraction: float = DEFAULT_EVAL_FRACTION
) -> list[LabeledImages]:
    """What each site trains on: its images less those it holds out for evaluation."""
    return [split_holdout(s, fraction)[0] for s in sites]


def start_broker(folder: Path, sites: int, *, tls: bool = True) -> Mosquitto:
    """A running Mosquitto with one identity (mutual TLS) or account (passwords) per site."""
    from harness.mosquitto import configure, configure_tls

    names = [site_name(i) for i in range(sites)]
    broker = configure_tls(folder, names) if tls else configure(folder, names)
    broker.start()
    return broker


class SiteCrashError(BaseException):
    """Raised inside an edge agent thread to make the site vanish as a crash would.

    Not an ``Exception``: the agent contains the faults a running service can survive
    (``except Exception``), and a crash is not one of them.
    """


def _serve(agent: EdgeAgent) -> None:
    # A crashed agent's link is closed by run()'s cleanup: the site is simply gone.
    with contextlib.suppress(SiteCrashError):
        agent.run(max_seconds=1200)


def task_for(dataset: Path | str, *, dropout: float = 0.3) -> TaskSpec:
    """The task of a dataset (from its metadata), with the model's dropout."""
    return replace(task_from_dataset(str(dataset)), dropout=dropout)


def save_sites(root: Path, sites: list[LabeledImages]) -> list[str]:
    """Each site's images as ``root/<site>.npz``; returns the site names."""
    names = [site_name(i) for i in range(len(sites))]
    for name, site in zip(names, sites, strict=True):
        save_site_npz(root / f"{name}.npz", site)
    return names


def gateway_config(broker: Mosquitto, out: Path, sites: int, **gateway_kw: Any) -> GatewayConfig:
    """A gateway on ``broker`` writing to ``out``, waiting for all ``sites``."""
    return GatewayConfig(
        broker=BrokerAddress.parse(broker.url(GATEWAY_USER)),
        identity=broker.identity(GATEWAY_USER),
        insecure=not broker.tls,
        allow_unsigned=not broker.tls,
        out=out,
        min_sites=sites,
        round_timeout=600,
        start_timeout=600,
        **gateway_kw,
    )


def edge_config(
    broker: Mosquitto,
    root: Path,
    name: str,
    federation: str,
    *,
    once: bool = True,
    eval_fraction: float = DEFAULT_EVAL_FRACTION,
) -> EdgeConfig:
    """Site ``name``'s agent (data from :func:`save_sites`, models in ``root/model-<name>``)."""
    return EdgeConfig(
        broker=BrokerAddress.parse(broker.url(name)),
        identity=broker.identity(name),
        insecure=not broker.tls,
        allow_unsigned=not broker.tls,
        site_id=name,
        data=str(root / f"{name}.npz"),
        model_dir=root / f"model-{name}",
        federation=federation,
        once=once,
        eval_fraction=eval_fraction,
    )


def run_federation(
    broker: Mosquitto,
    root: Path,
    sites: list[LabeledImages],
    *,
    dataset: Path | str | None = None,
    dropout: float = 0.3,
    eval_fraction: float = DEFAULT_EVAL_FRACTION,
    join_delay: float = 2.0,
    agent_class: Callable[[EdgeConfig], EdgeAgent] = EdgeAgent,
    **gateway_kw: Any,
) -> FederationResult:
    """A gateway in this thread and one agent thread per site.

    ``dataset`` gives the task (and, unless ``eval_data`` is passed, the public benchmark the
    gateway also scores); ``eval_fraction`` is each site's held-out share.
    """
    if dataset is not None:
        gateway_kw.setdefault("task", task_for(dataset, dropout=dropout))
        gateway_kw.setdefault("eval_data", str(dataset))
    names = save_sites(root, sites)
    config = gateway_config(broker, root / "run", len(sites), **gateway_kw)
    site_dirs = [root / f"model-{n}" for n in names]
    agents = [
        agent_class(edge_config(broker, root, n, config.federation, eval_fraction=eval_fraction))
        for n in names
    ]
    threads = [
        threading.Thread(target=_serve, args=(a,), daemon=True, name=n)
        for a, n in zip(agents, names, strict=True)
    ]

    def start_sites() -> None:
        time.sleep(join_delay)  # the sites join after the model is published: late joiners
        for t in threads:
            t.start()

    starter = threading.Thread(target=start_sites, daemon=True)
    starter.start()
    summary = Gateway(config).run()
    starter.join()
    deadline = time.monotonic() + 120
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "edge agents did not finish after the run"
    return FederationResult(root / "run", summary, site_dirs)


def federate(root: Path, sites: list[LabeledImages], **kw: Any) -> FederationResult:
    """One federation on a broker of its own (started in ``root/broker``, stopped after)."""
    broker = start_broker(root / "broker", len(sites))
    try:
        return run_federation(broker, root, sites, **kw)
    finally:
        broker.stop()
