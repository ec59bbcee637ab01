"""The simulation driver: FedAvg with TFF on a real dataset split across simulated sites."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from models.evaluate import choose_threshold, evaluate_split, fast_scorer, predict_logits
from models.settings import local_seed, site_name
from privadx.common.deps import require
from privadx.common.evaluation.central import central_figures
from privadx.common.evaluation.decision import HEADLINE_KEYS, decision
from privadx.common.evaluation.federated import score_reports, summary_figures
from privadx.common.evaluation.report import build_report
from privadx.common.model_info import ModelInfo
from privadx.common.ood import reference_of_sites
from privadx.common.runlog import RunFolder, json_ready
from privadx.common.weighting import DEFAULT_MAX_WEIGHT_RATIO, cap_example_counts
from privadx.common.weights_io import save_weights
from tff_core.config import SimulationConfig
from tff_core.experiment import Experiment, prepare
from tff_core.fedavg import build_fedavg, client_dataset
from tff_core.privacy import affordable_rounds, epsilon, privacy_record, tff_dp_aggregator
from tff_core.robust import tff_model_aggregator
from tff_core.runtime import op_determinism, tff_runtime, worker_cpu_seconds

log = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.npz"
ONNX_FILE = "model.onnx"


def sample_sites(config: SimulationConfig, round_num: int) -> list[int]:
    """The sites that train in ``round_num`` (all, or a seeded sample without replacement)."""
    n = config.partition.sites
    if config.sites_per_round == n:
        return list(range(n))
    rng = np.random.default_rng([config.seed, round_num])
    return sorted(rng.choice(n, size=config.sites_per_round, replace=False).tolist())


def run_simulation(config: SimulationConfig) -> dict[str, Any]:
    """Run federated training (and optionally the centralized baseline); write the run folder.

    Returns:
        The summary also written to ``summary.json``.
    """
    tf = require("tensorflow")
    tf.keras.utils.set_random_seed(config.seed)
    if config.dp is not None:
        # DP noise must not be predictable; TFF draws it from unseeded random ops, which op
        # determinism forbids. A DP run is therefore not bit-reproducible, by design.
        log.info("differential privacy on: the run is not bit-reproducible (fresh noise)")
    with op_determinism(config.dp is None):
        return _simulate(config)


def _simulate(config: SimulationConfig) -> dict[str, Any]:
    started, cpu_started = time.monotonic(), time.process_time()
    exp = prepare(config)
    run = RunFolder(config.out)
    run.write("config.json", config.to_dict())
    run.write("partition.json", _partition_record(exp))
    log.info(
        "%s: %d training images over %d sites (%s), %d rounds of %d local epochs",
        exp.dataset.name,
        len(exp.dataset.train),
        config.partition.sites,
        config.partition.scheme,
        config.rounds,
        config.local_epochs,
    )
    rounds_run = affordable_rounds(config.dp, config.rounds) if config.dp else config.rounds
    if rounds_run < config.rounds:
        log.warning(
            "--target-epsilon allows %d of the %d rounds; stopping after round %d",
            rounds_run,
            config.rounds,
            rounds_run,
        )
    with tff_runtime():
        model, final = _train_federated(config, exp, run, rounds_run)
        worker_cpu = worker_cpu_seconds()
    fed_seconds = time.monotonic() - started
    fed_cpu_seconds = time.process_time() - cpu_started + worker_cpu
    records = [r for r in run.read_metrics() if r.get("series") == "federated"]
    meta = weights_metadata(config, exp, final, records)
    meta["provenance"]["rounds"] = rounds_run
    if config.dp:
        meta["provenance"]["privacy"] = privacy_record(config.dp, rounds_run)
    from models.weights import get_weights

    save_weights(config.out / WEIGHTS_FILE, get_weights(model), meta)
    last = records[-1]
    summary: dict[str, Any] = {
        **{k: final[k] for k in HEADLINE_KEYS if k in final},
        "threshold": final.get("threshold"),
        "federated": summary_figures(last.get("federated")),
        "sites": last.get("sites", {}),
        "rounds": rounds_run,
        "num_sites": config.partition.sites,
        "dataset": exp.dataset.name,
        "seconds": round(fed_seconds, 1),
        "cpu_seconds": round(fed_cpu_seconds, 1),
        "test": final,
        "privacy": meta["provenance"].get("privacy"),
        "decision": meta["provenance"]["decision"],
        "ood": _ood_summary(meta.get("ood")),
    }
    if config.personalise:
        summary["personalisation"] = personalise_sites(model, exp)
    if config.centralized:
        from tff_core.centralized import train_centralized

        summary["centralized"] = train_centralized(config, exp, run)
    if config.export_onnx:
        summary["onnx"] = _export(config, model, meta, exp)
    run.write("summary.json", summary)
    run.plot()
    return summary


def _would_cap(config: SimulationConfig, exp: Experiment, chosen: list[int]) -> dict[str, int]:
    """The sites whose true example count a gateway's default cap would weigh down."""
    counts = {site_name(i): len(exp.sites[i]) for i in chosen}
    capped = cap_example_counts(counts, DEFAULT_MAX_WEIGHT_RATIO)
    return {s: n for s, n in counts.items() if capped[s] < n}


def _train_federated(
    config: SimulationConfig, exp: Experiment, run: RunFolder, rounds: int
) -> tuple[Any, dict[str, Any]]:
    from models.architectures import build_model

    process = build_fedavg(
        exp.model_spec,
        exp.preprocess,
        client_optimizer=config.client_optimizer,
        server_optimizer=config.server_optimizer,
        seed=config.seed,
        proximal_mu=config.proximal_mu,
        model_aggregator=(
            tff_dp_aggregator(config.dp) if config.dp else tff_model_aggregator(config.aggregation)
        ),
    )
    state = process.initialize()
    model = build_model(exp.model_spec, seed=config.seed)
    final: dict[str, Any] = {}
    for round_num in range(1, rounds + 1):
        t0 = time.monotonic()
        chosen = sample_sites(config, round_num)
        training = config.training_for(round_num)
        state = _with_client_lr(process, state, training.optimizer.learning_rate)
        datasets = [
            client_dataset(
                exp.sites[i],
                exp.preprocess,
                training,
                seed=local_seed(config.seed, round_num, site_name(i)),
                num_classes=exp.model_spec.num_classes,
            )
            for i in chosen
        ]
        output = process.next(state, datasets)
        state = output.state
        process.get_model_weights(state).assign_weights_to(model)
        train = output.metrics["client_work"]["train"]
        scorer = fast_scorer(model)  # the ONNX graph the sites will diagnose with
        threshold = choose_threshold(scorer, exp.dataset.val, exp.preprocess, exp.positive_class)
        final = evaluate_split(
            scorer,
            exp.dataset.test,
            exp.preprocess,
            positive_class=exp.positive_class,
            threshold=threshold,
        )
        record: dict[str, Any] = {
            "series": "federated",
            "round": round_num,
            "seconds": round(time.monotonic() - t0, 2),
            "clients": chosen,
            "capped_examples": {} if config.dp else _would_cap(config, exp, chosen),
            "train": {k: float(v) for k, v in train.items()},
            "aggregation": _aggregation_record(config, output.metrics),
            "test": final,
            "sites_train": _per_site(scorer, exp, threshold),
            **_federated_evaluation(scorer, exp),
        }
        if record["capped_examples"]:
            log.warning(
                "round %d: a gateway's example-count cap would weigh down %s "
                "(the simulation weighs their true counts)",
                round_num,
                sorted(record["capped_examples"]),
            )
        eps = epsilon(config.dp, round_num) if config.dp else None
        if config.dp:
            record["privacy"] = {
                "epsilon": eps,
                "delta": config.dp.delta,
                "clip": _clip_norm(output.metrics),
            }
        run.append_metrics(record)
        log.info(
            "round %d/%d: test AUC %.4f, accuracy %.4f, train loss %.4f (%.1f s)%s",
            round_num,
            config.rounds,
            final["auc"],
            final["accuracy"],
            train["loss"],
            record["seconds"],
            f", epsilon {eps:.3f}" if eps is not None else "",
        )
    return model, final


def _with_client_lr(process: Any, state: Any, learning_rate: float) -> Any:
    """``state`` with the sites' learning rate set for the next round (TFF's hparams)."""
    hparams = process.get_hparams(state)
    hparams["client_work"]["learning_rate"] = learning_rate
    return process.set_hparams(state, hparams)


def _federated_evaluation(model: Any, exp: Experiment) -> dict[str, Any]:
    """The federated evaluation a deployment would report.

    Each site's report of its held-out images, scored by the functions the gateway uses.
    """
    held = [(site_name(i), h) for i, h in enumerate(exp.held_out) if len(h)]
    logits = {s: predict_logits(model, h.images, exp.preprocess) for s, h in held}
    reports = {
        s: build_report(
            logits[s], h.labels, num_classes=h.num_classes, positive_class=exp.positive_class
        )
        for s, h in held
    }
    federated, sites = score_reports(reports, positive_class=exp.positive_class)
    record: dict[str, Any] = {"federated": federated, "sites": sites}
    if federated is not None:  # what pooling the held-out images would give, for comparison
        record["held_out_central"] = central_figures(
            np.concatenate([logits[s] for s, _ in held]),
            np.concatenate([h.labels for _, h in held]),
            positive_class=exp.positive_class,
            temperature=federated["temperature"],
        )
    return record


def _per_site(model: Any, exp: Experiment, threshold: float | None) -> list[dict[str, Any]]:
    results = []
    for i, site in enumerate(exp.sites):
        m = evaluate_split(
            model, site, exp.preprocess, positive_class=exp.positive_class, threshold=threshold
        )
        results.append(
            {"site": i, "examples": len(site), "accuracy": m["accuracy"], "auc": m["auc"]}
        )
    return results


def personalise_sites(model: Any, exp: Experiment) -> dict[str, Any]:
    """Each site's held-out figures with the global head and with its own refit head (logged)."""
    from models.personalise import HeadFit, personalise

    result = personalise(
        model,
        exp.sites,
        exp.held_out,
        exp.preprocess,
        class_names=exp.dataset.class_names,
        positive_class=exp.positive_class,
        fit=HeadFit(),
    )
    log.info(
        "personal heads: mean per-site gain in held-out AUC %s, accuracy %s (%d of %d sites "
        "better in accuracy, %d worse)",
        _signed(result["mean_gain_auc"]),
        _signed(result["mean_gain_accuracy"]),
        result["sites_better_accuracy"],
        len(result["sites"]),
        result["sites_worse_accuracy"],
    )
    return result


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.4f}"


def _partition_record(exp: Experiment) -> dict[str, Any]:
    """Each site's share of the training split, and how much of it is held out."""
    sites = []
    for i, (train, held) in enumerate(zip(exp.sites, exp.held_out, strict=True)):
        counts = np.add(train.class_counts(), held.class_counts())
        sites.append(
            {
                "site": i,
                "class_counts": counts.tolist(),
                "examples": int(counts.sum()),
                "train_examples": len(train),
                "held_out_examples": len(held),
            }
        )
    return {"class_names": list(exp.dataset.class_names), "sites": sites}


def weights_metadata(
    config: SimulationConfig,
    exp: Experiment,
    final: dict[str, Any],
    records: list[dict[str, Any]],
) -> dict[str, Any]:
    """What a weights file records about its model and its provenance.

    The decision rule (threshold, temperature) is the one a deployment's gateway would write:
    from the federated evaluation of the final model (:mod:`privadx.common.evaluation.decision`).
    """
    rule = decision(records)
    info = ModelInfo(
        model_spec=exp.model_spec,
        preprocess=exp.preprocess,
        class_names=exp.dataset.class_names,
        positive_class=exp.positive_class,
        threshold=rule.threshold,
        temperature=rule.temperature,
        ood=reference_of_sites([s.images for s in exp.sites], [h.images for h in exp.held_out]),
        provenance={
            "trained_by": "privadx simulate",
            "dataset": exp.dataset.name,
            "sites": config.partition.sites,
            "partition": str(config.partition.scheme),
            "alpha": config.partition.alpha,
            "rounds": config.rounds,
            "local_epochs": config.local_epochs,
            "min_local_steps": config.min_local_steps,
            "proximal_mu": config.proximal_mu,
            "logit_adjust": config.logit_adjust,
            "augmentation": str(config.augmentation),
            "seed": config.seed,
            "test_metrics": {k: final.get(k) for k in HEADLINE_KEYS},
            "federated_metrics": summary_figures(records[-1].get("federated")) if records else None,
            "decision": rule.to_dict(),
        },
    )
    return info.to_meta()


def _export(
    config: SimulationConfig, model: Any, meta: dict[str, Any], exp: Experiment
) -> dict[str, Any]:
    from models.onnx_export import export_onnx, verify_parity

    path = config.out / ONNX_FILE
    sha = export_onnx(model, meta, path)
    diff = verify_parity(model, path, exp.dataset.test.images[:256], exp.preprocess)
    return {"path": ONNX_FILE, "sha256": sha, "max_abs_logit_diff": diff}


def _ood_summary(ood: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the out-of-distribution reference was made of, for ``summary.json``."""
    if ood is None:
        return None
    return {k: ood[k] for k in ("scheme", "images", "held_out", "quantile", "threshold")}


def _aggregation_record(config: SimulationConfig, metrics: Any) -> dict[str, Any]:
    """The rule and TFF's aggregator measurements of a round, keyed as a gateway's round record.

    Norm-bound aggregation reports its clipping and zeroing norms and how many updates each
    touched, so a run shows whether the bounds held back honest sites' updates.
    """
    rule = "dp" if config.dp else str(config.aggregation)
    return {"rule": rule, **json_ready(metrics["aggregator"])}


def _clip_norm(metrics: Any) -> float | None:
    """The DP aggregator's current clipping norm, from TFF's round measurements."""
    try:
        return float(metrics["aggregator"]["dp"]["dp_query_metrics"]["clip"])
    except (KeyError, TypeError):
        return None
