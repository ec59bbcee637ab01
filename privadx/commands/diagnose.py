"""``privadx diagnose``: classify images at the site with an exported ONNX model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from privadx.commands._common import print_json

HELP = "diagnose PNG/JPEG/DICOM/.npz images with an ONNX model (no TensorFlow needed)"
DESCRIPTION = """\
Classify image files (or every image in the given folders) with an exported PrivaDx model.
Images are brought to the model's input with the preprocessing stored in the model; binary
models decide at the threshold chosen on validation data during training. A file that cannot
be read is reported and skipped; the exit code is 7 if any file failed, 0 if all succeeded.
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
    p.set_defaults(subparser=p, run=run)


def run(args: argparse.Namespace) -> int:
    """Diagnose and print one line (or JSON object) per image."""
    from common.errors import EXIT_PARTIAL, InputError
    from edge.diagnose import diagnose
    from edge.onnx_model import OnnxClassifier

    model = OnnxClassifier(args.model, threads=args.threads)
    results = diagnose(model, args.paths)
    if not results:
        raise InputError("no images found in the given paths")
    failed = sum(not r.ok for r in results)
    if args.json:
        print_json(
            {
                "model": str(args.model),
                "class_names": list(model.info.class_names),
                "threshold": model.info.threshold,
                "results": [r.to_dict() for r in results],
                "failed": failed,
            }
        )
    else:
        _print_table(results, model.info.class_names)
    if failed:
        print(f"privadx: {failed} of {len(results)} images could not be diagnosed", file=sys.stderr)
        return EXIT_PARTIAL
    return 0


def _print_table(results: list, names: tuple[str, ...]) -> None:
    width = max(12, *(len(r.source) for r in results))
    header = f"{'image':<{width}}  {'prediction':<16}" + "".join(
        f"  P({n})"[:14].rjust(14) for n in names
    )
    print(header)
    for r in results:
        if r.ok:
            probs = "".join(f"{r.probabilities[n]:14.4f}" for n in names)
            print(f"{r.source:<{width}}  {r.predicted:<16}{probs}")
        else:
            print(f"{r.source:<{width}}  ERROR: {r.error}")
