"""``privadx diagnose``: classify images at the site with an exported ONNX model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from privadx.commands._common import positive_int, print_json

if TYPE_CHECKING:
    from edge.diagnose import Diagnosis
    from privadx.common.model_info import ModelInfo

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
        "--allow-unsigned",
        action="store_true",
        help="use a model without a signed manifest (its origin is then unchecked)",
    )
    p.set_defaults(subparser=p, run=run)


def run(args: argparse.Namespace) -> int:
    """Diagnose and print one line (or JSON object) per image."""
    from edge.diagnose import diagnose
    from edge.onnx_model import OnnxClassifier
    from privadx.common.errors import EXIT_PARTIAL, InputError

    data, manifest = _verified_model(args)
    model = OnnxClassifier(args.model, threads=args.threads, data=data, provider=args.provider)
    if args.threshold is not None and len(model.info.class_names) != 2:
        raise InputError("--threshold applies to binary models only; this one decides at argmax")
    results = diagnose(model, args.paths, threshold=args.threshold, max_pixels=args.max_pixels)
    if not results:
        raise InputError("no images found in the given paths")
    failed = sum(not r.ok for r in results)
    if args.json:
        print_json(
            {
                "model": str(args.model),
                "class_names": list(model.info.class_names),
                "threshold": _threshold(model.info, args.threshold),
                "threshold_source": "site" if args.threshold is not None else "model",
                "calibrated": model.info.calibrated,
                "temperature": model.info.temperature,
                "manifest": manifest,
                "results": [r.to_dict() for r in results],
                "failed": failed,
            }
        )
    else:
        _print_provenance(manifest)
        _print_table(results, model.info, args.threshold)
    if failed:
        print(f"privadx: {failed} of {len(results)} images could not be diagnosed", file=sys.stderr)
        return EXIT_PARTIAL
    return 0


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability in (0, 1), got {value}")
    return value


def _threshold(info: ModelInfo, site: float | None) -> float | None:
    return site if site is not None else info.threshold


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


def _print_provenance(manifest: dict[str, object] | None) -> None:
    if manifest is None:
        print("model: UNSIGNED (origin and integrity not checked)")
        return
    metrics = manifest.get("metrics") or {}
    auc = metrics.get("auc") if isinstance(metrics, dict) else None
    reported = metrics.get("sites_reported") if isinstance(metrics, dict) else None
    print(
        f"model: signed by the federation gateway; run {manifest.get('run')}, round "
        f"{manifest.get('round')}, {manifest.get('contributors')} contributing sites"
        + (
            f", federated AUC {auc:.4f} on {reported} sites' held-out images"
            if isinstance(auc, float) and reported
            else f", AUC {auc:.4f}"
            if isinstance(auc, float)
            else ""
        )
    )


def _print_table(results: list[Diagnosis], info: ModelInfo, site: float | None) -> None:
    names = info.class_names
    width = max(12, *(len(r.source) for r in results))
    label = max(10, *(len(n) for n in names))
    cols = [max(8, len(n) + 3) for n in names]
    header = f"{'image':<{width}}  {'prediction':<{label}}"
    header += "".join(f"  {'P(' + n + ')':>{c}}" for n, c in zip(names, cols, strict=True))
    print(header)
    for r in results:
        if r.ok and r.probabilities is not None and r.predicted is not None:
            probs = "".join(
                f"  {r.probabilities[n]:>{c}.4f}" for n, c in zip(names, cols, strict=True)
            )
            print(f"{r.source:<{width}}  {r.predicted:<{label}}{probs}")
        else:
            print(f"{r.source:<{width}}  ERROR: {r.error}")
    calibration = (
        f"probabilities calibrated (temperature {info.temperature:.3f}, federated evaluation)"
        if info.temperature is not None
        else "probabilities not calibrated"
    )
    threshold = _threshold(info, site)
    if threshold is not None and len(names) == 2:
        positive = names[info.positive_class]
        source = "site threshold" if site is not None else "federation threshold"
        print(
            f"decision: {positive} when P({positive}) >= {threshold:.4f} ({source}); {calibration}"
        )
    else:
        print(f"decision: the most probable class; {calibration}")
