"""A site's evaluation report: what leaves the site about the model's held-out performance.

No per-image value is in it, only sums over the held-out images:

- ``hist[c, s, b]``: how many images of true class ``c`` have the score of class ``s`` in bin
  ``b``. The score is the log-odds of that class's probability, ``log(p / (1 - p))``, and the
  bins are fixed: width :data:`BIN_WIDTH` from ``-LOGIT_RANGE`` to ``LOGIT_RANGE`` plus an
  open bin at each end (uniform in log-odds, so confident predictions near 0 and 1, where
  medical classifiers put most images, keep their resolution). Binary tasks score the
  positive class only (``S = 1``); multi-class tasks score every class one-vs-rest.
- ``confusion[c, k]``: images of class ``c`` predicted as ``k`` at argmax.
- ``cross_entropy``: the summed cross-entropy of the model's probabilities.
- ``nll[t]``: the summed negative log-likelihood with the logits divided by ``TEMPERATURES[t]``
  (temperature scaling, Guo et al., "On Calibration of Modern Neural Networks", ICML 2017).
- ``rel_count[t, m]``, ``rel_confidence[t, m]``, ``rel_correct[t, m]``: per temperature, the
  images whose top-class confidence falls in reliability bin ``m`` (:data:`RELIABILITY_BINS`
  equal-width bins), their summed confidence and how many were right: the expected
  calibration error and the reliability diagram at every temperature of the grid.
- ``ood_*`` (optional): the moments of the site's training images' embeddings and the
  histogram of its held-out images' distances to the model's reference
  (:class:`privadx.common.ood.OodSums`), from which the gateway builds the model's
  out-of-distribution check.

The report travels as a tensors payload (:mod:`privadx.common.wire.tensors`) and is validated on
arrival: shapes fixed by the task, non-negative whole counts that agree with each other,
finite losses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from privadx.common.errors import InputError
from privadx.common.ood import OodError, OodSums

LOGIT_RANGE = 10.0
BIN_WIDTH = 0.025
EDGES = np.round(np.arange(-LOGIT_RANGE, LOGIT_RANGE + BIN_WIDTH / 2, BIN_WIDTH), 10)
"""Inner bin edges in log-odds; bin ``b`` holds scores in ``[EDGES[b - 1], EDGES[b])``."""
BINS = EDGES.size + 1
TEMPERATURES = np.round(np.exp(np.linspace(np.log(0.25), np.log(4.0), 41)), 6)
"""Softmax temperatures at which the NLL and reliability are summed (1.0 is the 21st)."""
RELIABILITY_BINS = 15
"""Equal-width confidence bins of the expected calibration error, as Guo et al. use."""
SCHEME = f"logit-{LOGIT_RANGE:g}-{BIN_WIDTH:g}/t{TEMPERATURES.size}/r{RELIABILITY_BINS}"
"""Names the bins and grids; a report made with other ones is refused."""
MAX_EXAMPLES = 10**9


class ReportError(InputError):
    """An evaluation report is malformed or does not fit the task."""


@dataclass(frozen=True)
class EvaluationReport:
    """Sums over one site's (or several sites') held-out images; see the module docstring."""

    hist: np.ndarray
    confusion: np.ndarray
    cross_entropy: float
    nll: np.ndarray
    rel_count: np.ndarray
    rel_confidence: np.ndarray
    rel_correct: np.ndarray
    ood: OodSums | None = None

    @property
    def num_classes(self) -> int:
        """Classes of the task."""
        return int(self.confusion.shape[0])

    @property
    def examples(self) -> int:
        """Held-out images the report sums over."""
        return int(self.confusion.sum())

    @property
    def class_counts(self) -> np.ndarray:
        """Held-out images per true class."""
        return self.confusion.sum(axis=1)

    def __add__(self, other: EvaluationReport) -> EvaluationReport:
        if self.hist.shape != other.hist.shape:
            raise ReportError(
                f"cannot add reports of shapes {self.hist.shape} and {other.hist.shape}"
            )
        return EvaluationReport(
            hist=self.hist + other.hist,
            confusion=self.confusion + other.confusion,
            cross_entropy=self.cross_entropy + other.cross_entropy,
            nll=self.nll + other.nll,
            rel_count=self.rel_count + other.rel_count,
            rel_confidence=self.rel_confidence + other.rel_confidence,
            rel_correct=self.rel_correct + other.rel_correct,
            ood=_add_ood(self.ood, other.ood),
        )

    def to_tensors(self) -> dict[str, np.ndarray]:
        """The named tensors that go on the wire."""
        return {
            "hist": self.hist.astype(np.uint32),
            "confusion": self.confusion.astype(np.uint32),
            "cross_entropy": np.array([self.cross_entropy], dtype=np.float64),
            "nll": self.nll.astype(np.float64),
            "rel_count": self.rel_count.astype(np.uint32),
            "rel_confidence": self.rel_confidence.astype(np.float64),
            "rel_correct": self.rel_correct.astype(np.uint32),
            **(self.ood.to_tensors() if self.ood is not None else {}),
        }

    @classmethod
    def from_tensors(
        cls, tensors: dict[str, np.ndarray], num_classes: int, scored: int, channels: int = 1
    ) -> EvaluationReport:
        """Validate and read a report for a task of ``num_classes`` (``scored`` score rows).

        ``channels``: of the task's images, for the optional ``ood_*`` tensors.

        Raises:
            ReportError: Missing or extra tensors, wrong shapes or types, negative or
                inconsistent counts, non-finite or impossible losses.
        """
        k, g, m = num_classes, TEMPERATURES.size, RELIABILITY_BINS
        shapes = {
            "hist": (k, scored, BINS),
            "confusion": (k, k),
            "cross_entropy": (1,),
            "nll": (g,),
            "rel_count": (g, m),
            "rel_confidence": (g, m),
            "rel_correct": (g, m),
        }
        ood_names = {n for n in tensors if n.startswith("ood_")}
        if set(tensors) - ood_names != set(shapes):
            raise ReportError(f"report has tensors {sorted(tensors)}, expected {sorted(shapes)}")
        try:
            ood = OodSums.from_tensors(tensors, channels) if ood_names else None
        except OodError as exc:
            raise ReportError(str(exc)) from None
        if ood is not None and len(ood_names) != 4:
            raise ReportError(f"report has ood tensors {sorted(ood_names)}, expected 4")
        for name, shape in shapes.items():
            if tensors[name].shape != shape:
                raise ReportError(
                    f"report tensor {name} has shape {list(tensors[name].shape)}, expected "
                    f"{list(shape)} for {k} classes"
                )
        report = cls(
            hist=_counts(tensors, "hist"),
            confusion=_counts(tensors, "confusion"),
            cross_entropy=float(_floats(tensors, "cross_entropy")[0]),
            nll=_floats(tensors, "nll"),
            rel_count=_counts(tensors, "rel_count"),
            rel_confidence=_floats(tensors, "rel_confidence"),
            rel_correct=_counts(tensors, "rel_correct"),
            ood=ood,
        )
        report.check()
        return report

    def check(self) -> None:
        """Raise :class:`ReportError` unless the parts of the report agree with each other."""
        n = self.examples
        if not 0 < n <= MAX_EXAMPLES:
            raise ReportError(f"report covers {n} images; expected 1 to {MAX_EXAMPLES}")
        per_class = self.class_counts
        if not np.array_equal(
            self.hist.sum(axis=2), np.repeat(per_class[:, None], self.hist.shape[1], axis=1)
        ):
            raise ReportError("histogram counts disagree with the confusion matrix")
        if not np.all(self.rel_count.sum(axis=1) == n):
            raise ReportError("reliability counts disagree with the number of images")
        if np.any(self.rel_correct > self.rel_count):
            raise ReportError("more correct predictions than predictions in a reliability bin")
        k = self.num_classes
        edges = np.linspace(0.0, 1.0, RELIABILITY_BINS + 1)
        low = np.maximum(edges[:-1], 1.0 / k) * self.rel_count - 1e-6 * (1 + self.rel_count)
        high = edges[1:] * self.rel_count + 1e-6 * (1 + self.rel_count)
        if np.any(self.rel_confidence < low) or np.any(self.rel_confidence > high):
            raise ReportError("summed confidences lie outside their reliability bins")
        if not (self.cross_entropy >= 0 and np.all(self.nll >= 0)):
            raise ReportError("negative losses")
        if not np.all(np.isfinite(self.nll)) or not np.isfinite(self.cross_entropy):
            raise ReportError("non-finite losses")
        if self.ood is not None and self.ood.hist.sum() > n:
            raise ReportError("the distance histogram counts more images than were held out")


def _counts(tensors: dict[str, np.ndarray], name: str) -> np.ndarray:
    array = tensors[name]
    if array.dtype.kind not in "iu":
        raise ReportError(f"report tensor {name} must hold whole counts, got {array.dtype}")
    if array.dtype.kind == "i" and np.any(array < 0):
        raise ReportError(f"report tensor {name} has negative counts")
    return array.astype(np.int64)


def _floats(tensors: dict[str, np.ndarray], name: str) -> np.ndarray:
    array = tensors[name]
    if array.dtype.kind != "f":
        raise ReportError(f"report tensor {name} must hold numbers, got {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise ReportError(f"report tensor {name} has NaN or infinite values")
    return array.astype(np.float64)


def _add_ood(a: OodSums | None, b: OodSums | None) -> OodSums | None:
    """Sums of two reports' ood parts (a report without one adds nothing)."""
    if a is None or b is None:
        return a if b is None else b
    return a + b


def scored_classes(num_classes: int, positive_class: int) -> list[int]:
    """The classes whose scores a report bins: the positive one (binary) or all."""
    return [positive_class] if num_classes == 2 else list(range(num_classes))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def class_log_odds(logits: np.ndarray, k: int) -> np.ndarray:
    """``log(p_k / (1 - p_k))`` per row, computed from the logits without cancellation."""
    z = np.asarray(logits, dtype=np.float64)
    rest = np.delete(z, k, axis=1)
    top = rest.max(axis=1)
    return z[:, k] - (top + np.log(np.exp(rest - top[:, None]).sum(axis=1)))


def bin_index(scores: np.ndarray) -> np.ndarray:
    """The histogram bin of each log-odds score."""
    return np.searchsorted(EDGES, scores, side="right")


def build_report(
    logits: np.ndarray, labels: np.ndarray, *, num_classes: int, positive_class: int = 1
) -> EvaluationReport:
    """Sum one site's held-out logits ``(N, K)`` and true labels ``(N,)`` into a report.

    Raises:
        ReportError: No images, or logits that do not fit the task.
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if logits.ndim != 2 or logits.shape[1] != num_classes or logits.shape[0] != labels.size:
        raise ReportError(f"logits of shape {logits.shape} for {labels.size} labels")
    if labels.size == 0:
        raise ReportError("no held-out images to evaluate")
    if not np.all(np.isfinite(logits)):
        raise ReportError("the model produced non-finite logits")
    k = num_classes
    scored = scored_classes(k, positive_class)
    hist = np.zeros((k, len(scored), BINS), dtype=np.int64)
    for j, s in enumerate(scored):
        np.add.at(hist[:, j, :], (labels, bin_index(class_log_odds(logits, s))), 1)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, logits.argmax(axis=1)), 1)
    g = TEMPERATURES.size
    nll = np.empty(g)
    rel_count = np.zeros((g, RELIABILITY_BINS), dtype=np.int64)
    rel_confidence = np.zeros((g, RELIABILITY_BINS))
    rel_correct = np.zeros((g, RELIABILITY_BINS), dtype=np.int64)
    rows = np.arange(labels.size)
    for t, temperature in enumerate(TEMPERATURES):
        logp = log_softmax(logits / temperature)
        nll[t] = -logp[rows, labels].sum()
        confidence = np.exp(logp.max(axis=1))
        correct = logp.argmax(axis=1) == labels
        m = np.clip((confidence * RELIABILITY_BINS).astype(np.int64), 0, RELIABILITY_BINS - 1)
        np.add.at(rel_count[t], m, 1)
        np.add.at(rel_confidence[t], m, confidence)
        np.add.at(rel_correct[t], m, correct.astype(np.int64))
    cross_entropy = float(-log_softmax(logits)[rows, labels].sum())
    return EvaluationReport(
        hist, confusion, cross_entropy, nll, rel_count, rel_confidence, rel_correct
    )


def sum_reports(reports: list[EvaluationReport]) -> EvaluationReport:
    """The sum of several reports (of the same task)."""
    if not reports:
        raise ReportError("no reports to sum")
    total = reports[0]
    for report in reports[1:]:
        total = total + report
    return total
