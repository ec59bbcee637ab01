"""What a diagnosis says about one image, in words and as a heat-map figure per image.

:class:`Explanation` holds what every view of a diagnosis shares (the model's decision rule,
whether its probabilities are calibrated, its provenance); :class:`HeatmapFolder` is an
:data:`edge.diagnose.Explainer` that writes one PNG per diagnosed image: the input as the
model saw it, the evidence map over it, the prediction with its probability, the decision rule
and the provenance line.
"""

from __future__ import annotations

import logging
import re
import textwrap
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edge.diagnose import Diagnosis
from edge.heatmap import figure_png
from edge.provenance import Provenance
from privadx.common.errors import InputError
from privadx.common.model_info import ModelInfo

log = logging.getLogger(__name__)

WRAP = 76
"""Characters per text line under a figure (the figure is 472 pixels wide)."""


@dataclass(frozen=True, kw_only=True)
class Explanation:
    """The decision rule and origin every explained image shares."""

    info: ModelInfo
    provenance: Provenance
    site_threshold: float | None = None
    has_maps: bool = True

    @property
    def threshold(self) -> float | None:
        """The binary threshold in force: the site's own, else the model's."""
        return self.site_threshold if self.site_threshold is not None else self.info.threshold

    def decision_rule(self) -> str:
        """``decision: RULE; CALIBRATION`` (one line)."""
        return f"decision: {self.rule()}"

    def rule(self) -> str:
        """How the class is chosen, and whether the probabilities are calibrated."""
        info, cut = self.info, self.threshold
        if cut is not None and len(info.class_names) == 2:
            positive = info.class_names[info.positive_class]
            source = "site threshold" if self.site_threshold is not None else "federation threshold"
            rule = f"{positive} when P({positive}) >= {cut:.4f} ({source})"
        else:
            rule = "the most probable class"
        return f"{rule}; {self.calibration()}"

    def calibration(self) -> str:
        """Whether the probabilities shown are calibrated, and by what."""
        t = self.info.temperature
        if t is None:
            return "probabilities not calibrated"
        return f"probabilities calibrated (temperature {t:.3f}, federated evaluation)"

    def verdict(self, result: Diagnosis) -> str:
        """``prediction: CLASS, P(CLASS) 0.9312``, or the reason there is none."""
        if result.unusual:
            return f"no class: {self.unusual_note(result)}"
        if not result.classified or result.predicted is None or result.probabilities is None:
            return f"no diagnosis: {result.error}"
        p = result.probabilities[result.predicted]
        kind = "calibrated" if self.info.calibrated else "not calibrated"
        return f"prediction: {result.predicted}, P({result.predicted}) {p:.4f} ({kind})"

    def unusual_note(self, result: Diagnosis) -> str:
        """Why an unusual image gets no class."""
        ood = self.info.ood
        limit = f" > {ood.threshold:.1f}" if ood is not None and ood.threshold else ""
        distance = result.ood_distance if result.ood_distance is not None else float("nan")
        return (
            "this image does not look like the images the model was trained on "
            f"(distance {distance:.1f}{limit})"
        )

    def ood_check(self) -> str:
        """Whether and how inputs are checked against the training images."""
        ood = self.info.ood
        if ood is None or ood.threshold is None:
            return "none (the model carries no reference statistics of its training images)"
        return (
            f"inputs farther than {ood.threshold:.1f} from the "
            f"{ood.images} training images get no class (99% of {ood.held_out} held-out "
            "images lie within it)"
        )

    def map_note(self) -> str:
        """What the heat map shows."""
        if not self.has_maps:
            return "heat map: none (this model was exported without class activation maps)"
        return "heat map: where the image pushes the model towards the predicted class"

    def caption(self, result: Diagnosis) -> list[str]:
        """The text under an image's figure, wrapped to the figure's width."""
        lines = [self.verdict(result)]
        lines += [] if result.unusual else [self.decision_rule()]
        lines.append(self.provenance.line())
        lines.append(self.map_note())
        return [part for line in lines for part in textwrap.wrap(line, WRAP)]


class HeatmapFolder:
    """Writes ``NNNN-<name>.png`` per diagnosed image into a folder (an Explainer)."""

    def __init__(self, folder: Path, explanation: Explanation) -> None:
        """Create ``folder`` if needed.

        Raises:
            InputError: ``folder`` is a file or cannot be created.
        """
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise InputError(f"--heatmaps {folder}: not a folder") from exc
        except OSError as exc:
            raise InputError(f"--heatmaps {folder}: cannot create it ({exc.strerror})") from exc
        self.folder = folder
        self.explanation = explanation

    def __call__(
        self, index: int, result: Diagnosis, image: np.ndarray | None, heat: np.ndarray | None
    ) -> Diagnosis:
        """Write the figure of one diagnosed image; inputs without a diagnosis get none."""
        if image is None or not result.ok:
            return result
        path = self.folder / f"{index + 1:04d}-{figure_stem(result.source)}.png"
        try:
            path.write_bytes(figure_png(image, heat, self.explanation.caption(result)))
        except OSError as exc:
            raise InputError(f"cannot write heat maps into {self.folder} ({exc})") from exc
        return replace(result, heatmap=str(path))


def figure_stem(source: str) -> str:
    """A file-name-safe short form of an input's name (``scans/a 1.png`` -> ``a_1``).

    An image inside an ``.npz`` keeps its index (``few.npz[3]`` -> ``few_3``).
    """
    base, _, index = Path(source).name.partition("[")
    name = Path(base).stem + (f"_{index.rstrip(']')}" if index else "")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")[:60] or "image"
