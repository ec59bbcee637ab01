"""``privadx export``: turn a weights file into a verified ONNX model with metadata."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np

from common.preprocess import PreprocessSpec, fit_image
from privadx.commands._common import add_data_dir, print_json

log = logging.getLogger(__name__)

HELP = "export weights.npz to ONNX (opset 17, metadata, SHA-256, parity-checked)"
DESCRIPTION = """\
Rebuild the Keras model a weights file describes, convert it to ONNX with tf2onnx (opset 17,
input 'image', dynamic batch), embed class names, preprocessing, decision threshold and
training provenance as metadata, check it with onnx.checker, write MODEL.onnx.sha256 beside
it, and verify that ONNX Runtime and Keras agree (max |logit difference| <= 1e-4) on real
test images of the dataset the weights were trained on (or --verify-data).
With --identity (the gateway's identity folder from `privadx certs`), it also writes
MODEL.onnx.manifest.json, the signed manifest `privadx diagnose` checks.
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``export``."""
    p = sub.add_parser(
        "export",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("weights", type=Path, help="weights.npz written by simulate or the gateway")
    p.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    p.add_argument(
        "--verify-data",
        default=None,
        help="dataset name or .npz whose test images check parity "
        "(default: the dataset named in the weights' provenance)",
    )
    add_data_dir(p)
    p.add_argument(
        "--identity",
        type=Path,
        default=None,
        help="sign the model with this identity folder (the federation gateway's)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(subparser=p, run=run)


def run(args: argparse.Namespace) -> int:
    """Export and verify; print the file, its hash and the parity figure."""
    from common.weights_io import load_weights
    from models.onnx_export import export_onnx, verify_parity
    from models.rebuild import model_from_weights

    weights, meta = load_weights(args.weights)
    model, preprocess = model_from_weights(weights, meta)
    digest = export_onnx(model, meta, args.out)
    images = _parity_images(args, meta, preprocess)
    diff = verify_parity(model, args.out, images, preprocess)
    result = {
        "onnx": str(args.out),
        "sha256": digest,
        "parity_images": len(images),
        "max_abs_logit_diff": diff,
        "manifest": _sign(args, meta) if args.identity else None,
    }
    if args.json:
        print_json(result)
    else:
        print(f"{args.out}  sha256 {digest}")
        print(f"ONNX Runtime vs Keras on {len(images)} images: max |logit diff| {diff:.2e}")
    return 0


def _sign(args: argparse.Namespace, meta: dict[str, Any]) -> str:
    """Write the signed manifest of the exported file; return its path."""
    from common.trust.identity import Identity
    from common.trust.manifest import build_manifest, manifest_path, write_signed

    identity = Identity.load(args.identity)
    provenance = meta.get("provenance", {})
    sites = provenance.get("sites")  # a count (simulation) or the site ids (gateway)
    manifest = build_manifest(
        file_name=args.out.name,
        data=args.out.read_bytes(),
        provenance={
            "run": provenance.get("run"),
            "round": provenance.get("rounds"),
            "dataset": provenance.get("dataset"),
            "contributors": len(sites) if isinstance(sites, list) else sites,
            "metrics": provenance.get("test_metrics"),
            "threshold": meta.get("threshold"),
            "exported_from": args.weights.name,
        },
    )
    write_signed(args.out, manifest, identity.signer)
    return str(manifest_path(args.out))


def _parity_images(
    args: argparse.Namespace, meta: dict[str, Any], preprocess: PreprocessSpec
) -> np.ndarray:
    """Real test images for the parity check, fitted to the model's input."""
    from common.data.medmnist import load_npz, resolve_dataset
    from common.errors import DataError

    source = args.verify_data or meta.get("provenance", {}).get("dataset")
    if not source:
        raise DataError("no dataset to check parity on; pass --verify-data NAME_OR_NPZ")
    test = load_npz(resolve_dataset(source, args.data_dir)).test
    return np.stack([fit_image(img, preprocess) for img in test.images[:256]])
