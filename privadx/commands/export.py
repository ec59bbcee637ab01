"""``privadx export``: turn a weights file into a verified ONNX model with metadata."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np

from privadx.commands._common import add_data_dir, positive_int, print_json
from privadx.common.evaluation.decision import HEADLINE_KEYS
from privadx.common.preprocess import PreprocessSpec, fit_images

log = logging.getLogger(__name__)

HELP = "export weights.npz to ONNX (opset 17, metadata, SHA-256, parity-checked)"
DESCRIPTION = """\
Rebuild the Keras model a weights file describes, convert it to ONNX with tf2onnx (opset 17,
input 'image', dynamic batch), embed class names, preprocessing, decision threshold,
calibration temperature and training provenance as metadata, check it with onnx.checker,
write MODEL.onnx.sha256 beside it, and verify that ONNX Runtime and Keras agree (max |logit
difference| <= 1e-4) on real test images of the dataset the weights were trained on (or
--verify-data).
With --identity (the gateway's identity folder from `privadx certs`), it also writes
MODEL.onnx.manifest.json, the signed manifest `privadx diagnose` checks.

With --int8 it also writes MODEL.int8.onnx: static int8 quantization with ONNX Runtime (QDQ,
weights per channel), calibrated on --calibration-data (on a site: its own images; by default
the training split of the verification dataset), and reports accuracy, AUC and size of the
fp32 and int8 models on the whole test split.
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
    p.add_argument(
        "--int8", action="store_true", help="also write MODEL.int8.onnx (static int8, QDQ)"
    )
    p.add_argument(
        "--calibration-data",
        default=None,
        help="images to calibrate int8 ranges on: class folder, CSV manifest or .npz "
        "(default: the training split of the verification dataset)",
    )
    p.add_argument(
        "--calibration-images",
        type=positive_int,
        default=512,
        help="how many calibration images to use (default: %(default)s)",
    )
    p.add_argument(
        "--class-maps",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add the class activation maps output that diagnose draws heat maps from "
        "(--no-class-maps: logits only, for devices whose diagnose predates heat maps)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(subparser=p, run=run)


def run(args: argparse.Namespace) -> int:
    """Export and verify; print the file, its hash and the parity figure."""
    from models.onnx_export import export_onnx, verify_parity
    from models.rebuild import model_from_weights
    from privadx.common.weights_io import load_weights

    weights, meta = load_weights(args.weights)
    model, preprocess = model_from_weights(weights, meta)
    digest = export_onnx(model, meta, args.out, class_maps=args.class_maps)
    images = _parity_images(args, meta, preprocess)
    diff = verify_parity(model, args.out, images, preprocess)
    result: dict[str, Any] = {
        "onnx": str(args.out),
        "sha256": digest,
        "parity_images": len(images),
        "max_abs_logit_diff": diff,
        "manifest": _sign(args, meta, args.out) if args.identity else None,
    }
    if args.int8:
        result["int8"] = _int8(args, meta, preprocess)
    if args.json:
        print_json(result)
        return 0
    print(f"{args.out}  sha256 {digest}")
    print(f"ONNX Runtime vs Keras on {len(images)} images: max |logit diff| {diff:.2e}")
    if args.int8:
        q = result["int8"]
        for name in ("fp32", "int8"):
            m = q[name]
            print(
                f"{name}: {m['bytes']:,} bytes, test accuracy {m['accuracy']:.4f}, "
                f"AUC {m['auc']:.4f} ({q['test_images']} images)"
            )
        print(f"{q['onnx']}  sha256 {q['sha256']}")
    return 0


def _int8(
    args: argparse.Namespace, meta: dict[str, Any], preprocess: PreprocessSpec
) -> dict[str, Any]:
    """Quantize the exported model; compare fp32 and int8 on the whole test split."""
    from models.onnx_int8 import quantize_int8

    out = args.out.with_name(args.out.stem + ".int8.onnx")
    calibration = _calibration_images(args, meta, preprocess)
    record = quantize_int8(args.out, out, calibration, preprocess)
    test = _test_split(args, meta)
    return {
        "onnx": str(out),
        **record,
        "test_images": len(test.labels),
        "fp32": {"bytes": args.out.stat().st_size, **_onnx_metrics(args.out, test, preprocess)},
        "int8": {"bytes": out.stat().st_size, **_onnx_metrics(out, test, preprocess)},
        "manifest": _sign(args, meta, out) if args.identity else None,
    }


def _onnx_metrics(path: Path, split: Any, preprocess: PreprocessSpec) -> dict[str, float]:
    """Accuracy and AUC of an ONNX model on a labelled split, with its own decision rule."""
    from edge.onnx_model import OnnxClassifier
    from privadx.common.metrics import evaluate

    model = OnnxClassifier(path)
    images = fit_images(split.images, preprocess)
    probs = np.concatenate(
        [model.predict(images[i : i + 256])[0] for i in range(0, len(images), 256)]
    )
    info = model.info
    metrics = evaluate(
        split.labels,
        probs,
        info.class_names,
        positive_class=info.positive_class,
        threshold=info.threshold,
    )
    return {k: float(metrics[k]) for k in HEADLINE_KEYS}


def _calibration_images(
    args: argparse.Namespace, meta: dict[str, Any], preprocess: PreprocessSpec
) -> np.ndarray:
    from privadx.common.data.local import load_local_dataset
    from privadx.common.data.medmnist import load_npz, resolve_dataset

    if args.calibration_data:
        path = resolve_dataset(args.calibration_data, args.data_dir)
        images = load_local_dataset(path, preprocess, tuple(meta["class_names"])).data.images
    else:
        source = _dataset_source(args, meta)
        images = load_npz(resolve_dataset(source, args.data_dir)).train.images
        log.info("calibrating int8 ranges on the training split of %s", source)
    return fit_images(images[: args.calibration_images], preprocess)


def _sign(args: argparse.Namespace, meta: dict[str, Any], path: Path) -> str:
    """Write the signed manifest of the exported file; return its path."""
    from privadx.common.trust.identity import Identity
    from privadx.common.trust.manifest import build_manifest, manifest_path, write_signed

    identity = Identity.load(args.identity)
    provenance = meta.get("provenance", {})
    sites = provenance.get("sites")  # a count (simulation) or the site ids (gateway)
    manifest = build_manifest(
        file_name=path.name,
        data=path.read_bytes(),
        provenance={
            "run": provenance.get("run"),
            "round": provenance.get("rounds"),
            "dataset": provenance.get("dataset"),
            "contributors": len(sites) if isinstance(sites, list) else sites,
            "metrics": provenance.get("federated_metrics") or provenance.get("test_metrics"),
            "threshold": meta.get("threshold"),
            "temperature": meta.get("temperature"),
            "exported_from": args.weights.name,
        },
    )
    write_signed(path, manifest, identity.signer)
    return str(manifest_path(path))


def _parity_images(
    args: argparse.Namespace, meta: dict[str, Any], preprocess: PreprocessSpec
) -> np.ndarray:
    """Real test images for the parity check, fitted to the model's input."""
    test = _test_split(args, meta)
    return fit_images(test.images[:256], preprocess)


def _dataset_source(args: argparse.Namespace, meta: dict[str, Any]) -> str:
    from privadx.common.errors import DataError

    provenance = meta.get("provenance", {})
    source = args.verify_data or provenance.get("dataset") or provenance.get("benchmark")
    if not source:
        raise DataError("no dataset to check parity on; pass --verify-data NAME_OR_NPZ")
    return str(source)


def _test_split(args: argparse.Namespace, meta: dict[str, Any]) -> Any:
    from privadx.common.data.medmnist import load_npz, resolve_dataset

    return load_npz(resolve_dataset(_dataset_source(args, meta), args.data_dir)).test
