"""A site's part in federated evaluation: score each new global model on held-out images.

The site keeps back part of its images (:mod:`privadx.common.evaluation.holdout`, or a separate
evaluation set), scores every new global model on them and sends the gateway one signed
report of sums (:mod:`privadx.common.evaluation.report`): no per-image value leaves the site. Under
secure aggregation the report goes into a secure sum instead (the agent's
``_join_secure_evaluation``), so the gateway learns only the sites' total. It also
logs the figures its own images give, including the decision threshold they would choose.
Each report also carries the site's out-of-distribution sums (:class:`SiteOod`).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from privadx.common.data.arrays import LabeledImages
from privadx.common.evaluation.federated import site_metrics
from privadx.common.evaluation.report import SCHEME, EvaluationReport
from privadx.common.ood import OodSums, Reference, distance_histogram, embed, site_moments
from privadx.common.preprocess import PreprocessSpec
from privadx.common.wire.envelope import Envelope
from privadx.common.wire.messages import RUN_NONCE, evaluation_envelope

log = logging.getLogger(__name__)


def score_held_out(
    keras: Any, weights: dict[str, np.ndarray], held_out: LabeledImages, spec: PreprocessSpec
) -> np.ndarray:
    """Logits of the global ``weights`` on the held-out images (``keras`` gives the graph)."""
    from models.evaluate import predict_logits
    from models.weights import set_weights

    set_weights(keras, weights)
    return predict_logits(keras, held_out.images, spec)


def report_envelope(
    *,
    site: str,
    run: str,
    round_num: int,
    model_sha256: str,
    report: EvaluationReport,
    run_nonce: str = "",
) -> Envelope:
    """The plain ``EVALUATION`` message of one model's report (unsigned)."""
    return evaluation_envelope(
        run=run,
        round_num=round_num,
        site=site,
        report=report.to_tensors(),
        meta={
            "base_model": model_sha256,
            "scheme": SCHEME,
            "examples": report.examples,
            RUN_NONCE: run_nonce,
        },
    )


def log_own_figures(report: EvaluationReport, round_num: int, positive_class: int) -> None:
    """Tell the site how the model does on its own images, and the threshold they'd pick."""
    own = site_metrics(report, positive_class=positive_class, threshold_logit=None)
    log.info(
        "round %d model on this site's %d held-out images: AUC %s; the threshold these images "
        "would choose: %s",
        round_num,
        own["examples"],
        _fmt(own["auc"]),
        _fmt(own["own_threshold"]),
    )


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) and np.isfinite(value) else "n/a"


class SiteOod:
    """This site's part of the out-of-distribution reference (:mod:`privadx.common.ood`).

    The moments of its training images are computed once; the histogram of its held-out
    images' distances is computed for each model that carries a reference. Only sums leave.
    """

    def __init__(self, train: LabeledImages, held_out: LabeledImages) -> None:
        channels = train.images.shape[-1]
        self.held_out = held_out.images
        self.moments = site_moments(train.images) or OodSums.empty(channels).moments
        self.channels = channels

    def sums(self, reference: Reference | None) -> OodSums:
        """The sums for a report on a model carrying ``reference`` (or none)."""
        empty = OodSums.empty(self.channels)
        if reference is None or reference.channels != self.channels or not len(self.held_out):
            return OodSums(self.moments, empty.hist)
        return OodSums(self.moments, distance_histogram(reference.distances(embed(self.held_out))))
