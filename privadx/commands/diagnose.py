"""``privadx diagnose``: classify images at the site with an exported ONNX model."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from privadx.commands._common import positive_int, print_json

if TYPE_CHECKING:
    import numpy as np

    from edge.diagnose import Diagnosis, Explainer
    from edge.explain import Explanation

log = logging.getLogger(__name__)

HELP = "diagnose PNG/JPEG/DICOM/.npz images with an ONNX model (no TensorFlow needed)"
DESCRIPTION = """\
Classify image files (or every image in the given folders) with an exported PrivaDx model.
Images are brought to the model's input with the preprocessing stored in the model. The
probabilities shown are calibrated when the model carries a temperature (chosen by federated
evaluation on the sites' held-out images), and binary models decide at the federation's
threshold unless a site gives its own (--threshold, shown as the site threshold). A file that
cannot be read is reported and skipped; the exit code is 7 if any file failed, 0 if all
succeeded.

The model must carry a valid signature: MODEL.manifest.json beside it, signed by the
federation's gateway, whose SHA-256 matches the file. It is checked against the federation CA
(--ca, else $PRIVADX_CA, else ca.pem beside the model, where the edge agent keeps it). A
tampered or unsigned model is refused (exit 10) unless --allow-unsigned is given.

To see why: --heatmaps DIR writes a figure per image (the input as the model saw it, the heat
map of the evidence for the predicted class over it, the probability, the decision rule and
the model's provenance); --report FILE.html writes one self-contained page with a row per
image under a banner of the model's provenance (run, round, contributing sites, federated
metrics, privacy, signature), to open in any browser without a network.
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``diagnose``."""
    p = sub.add_parser(
        "diagnose",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", type=Path, help="model.onnx exported by PrivaDx")
    p.add_argument("paths", type=Path, nargs="+", metavar="PATH", help="image files or folders")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    p.add_argument(
        "--provider",
        default="cpu",
        metavar="NAME",
        help="ONNX Runtime execution provider: cpu (default), cuda or tensorrt (with "
        "onnxruntime-gpu, e.g. on a Jetson), or a full provider name",
    )
    p.add_argument(
        "--threshold",
        type=_probability,
        default=None,
        help="binary models: this site's own decision threshold on the (calibrated) "
        "probability of the positive class, instead of the federation's",
    )
    p.add_argument(
        "--ca",
        type=Path,
        default=None,
        help="federation CA certificate to check the model's signature "
        "(default: $PRIVADX_CA, else ca.pem beside the model)",
    )
    p.add_argument(
        "--max-pixels",
        type=positive_int,
        default=None,
        help="largest image (pixels per image or DICOM frame) decoded; larger files are "
        "reported and skipped before decoding (default 40,000,000)",
    )
    p.add_argument(
        "--heatmaps",
        type=Path,
        default=None,
        metavar="DIR",
        help="write a heat-map figure (PNG) per diagnosed image into DIR",
    )
    p.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="FILE",
        help="write a self-contained HTML report with a row per image to FILE",
    )
    p.add_argument(
        "--allow-unsigned",
        action="store_true",
        help="use a model without a signed manifest (its origin is then unchecked)",
    )
    p.set_defaults(subparser=p, run=run)


def run(args: argparse.Namespace) -> int:
    """Diagnose and print one line (or JSON object) per image."""
    from edge.diagnose import diagnose
    from edge.explain import Explanation, HeatmapFolder
    from edge.onnx_model import OnnxClassifier
    from edge.provenance import Provenance
    from edge.report import HtmlReport
    from privadx.common.errors import EXIT_PARTIAL, InputError

    data, manifest = _verified_model(args)
    model = OnnxClassifier(args.model, threads=args.threads, data=data, provider=args.provider)
    if args.threshold is not None and len(model.info.class_names) != 2:
        raise InputError("--threshold applies to binary models only; this one decides at argmax")
    explanation = Explanation(
        info=model.info,
        provenance=Provenance.of(manifest, model.info),
        site_threshold=args.threshold,
        has_maps=model.has_class_maps,
    )
    if (args.heatmaps or args.report) and not model.has_class_maps:
        log.warning("%s has no class activation maps: no heat maps to draw", args.model.name)
    folder = HeatmapFolder(args.heatmaps, explanation) if args.heatmaps else None
    report = (
        HtmlReport(args.report, explanation, model_name=args.model.name) if args.report else None
    )
    try:
        results = diagnose(
            model,
            args.paths,
            threshold=args.threshold,
            max_pixels=args.max_pixels,
            explain=_chain(folder, report),
        )
        if not results:
            raise InputError("no images found in the given paths")
    except BaseException:
        if report is not None:
            report.abort()
        raise
    report_path = report.close() if report is not None else None
    failed = sum(not r.ok for r in results)
    if args.json:
        print_json(
            {
                "model": str(args.model),
                "class_names": list(model.info.class_names),
                "threshold": explanation.threshold,
                "threshold_source": "site" if args.threshold is not None else "model",
                "calibrated": model.info.calibrated,
                "temperature": model.info.temperature,
                "class_maps": model.has_class_maps,
                "ood_threshold": model.info.ood.threshold if model.info.ood else None,
                "unusual": sum(r.unusual for r in results),
                "manifest": manifest,
                "results": [r.to_dict() for r in results],
                "failed": failed,
                "heatmaps": str(args.heatmaps) if folder else None,
                "report": str(report_path) if report_path else None,
            }
        )
    else:
        print(explanation.provenance.line())
        _print_table(results, explanation)
        if folder is not None:
            print(f"heat maps: {sum(r.heatmap is not None for r in results)} in {args.heatmaps}")
        if report_path is not None:
            print(f"report: {report_path}")
    if failed:
        print(f"privadx: {failed} of {len(results)} images could not be diagnosed", file=sys.stderr)
        return EXIT_PARTIAL
    return 0


def _chain(*explainers: Explainer | None) -> Explainer | None:
    """One explainer calling each given one in turn (``None`` when none is given)."""
    chain = [e for e in explainers if e is not None]
    if not chain:
        return None

    def explain(
        index: int, result: Diagnosis, image: np.ndarray | None, heat: np.ndarray | None
    ) -> Diagnosis:
        for explainer in chain:
            result = explainer(index, result, image, heat)
        return result

    return explain


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability in (0, 1), got {value}")
    return value


def _verified_model(args: argparse.Namespace) -> tuple[bytes, dict[str, object] | None]:
    """The model file's bytes, checked against its signed manifest."""
    import os

    from privadx.common.errors import ModelError
    from privadx.common.trust.manifest import verify_model_file

    try:
        data = args.model.read_bytes()
    except OSError as exc:
        raise ModelError(f"{args.model}: cannot read the model ({exc.strerror})") from exc
    ca = args.ca or (Path(os.environ["PRIVADX_CA"]) if os.environ.get("PRIVADX_CA") else None)
    ca = ca or args.model.with_name("ca.pem")
    manifest = verify_model_file(args.model, data, ca_file=ca, allow_unsigned=args.allow_unsigned)
    return data, manifest


def _print_table(results: list[Diagnosis], explanation: Explanation) -> None:
    names = explanation.info.class_names
    width = max(12, *(len(r.source) for r in results))
    label = max(10, *(len(n) for n in names))
    cols = [max(8, len(n) + 3) for n in names]
    header = f"{'image':<{width}}  {'prediction':<{label}}"
    header += "".join(f"  {'P(' + n + ')':>{c}}" for n, c in zip(names, cols, strict=True))
    print(header)
    for r in results:
        if r.classified and r.probabilities is not None and r.predicted is not None:
            probs = "".join(
                f"  {r.probabilities[n]:>{c}.4f}" for n, c in zip(names, cols, strict=True)
            )
            print(f"{r.source:<{width}}  {r.predicted:<{label}}{probs}")
        elif r.unusual:
            print(f"{r.source:<{width}}  NO CLASS: {explanation.unusual_note(r)}")
        else:
            print(f"{r.source:<{width}}  ERROR: {r.error}")
    print(explanation.decision_rule())
    print(f"out-of-distribution check: {explanation.ood_check()}")
