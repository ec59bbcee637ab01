"""``privadx data``: fetch MedMNIST datasets and inspect dataset files."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from privadx.commands._common import Progress, add_data_dir, print_json
from privadx.common.errors import ExitCode

HELP = "download and inspect datasets (MedMNIST .npz, image folders, CSV manifests)"


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``data fetch`` and ``data info``."""
    parser = sub.add_parser("data", help=HELP, description=HELP)
    parser.set_defaults(subparser=parser, run=lambda _a: _usage(parser))
    data_sub = parser.add_subparsers(dest="data_command", metavar="ACTION")

    fetch = data_sub.add_parser(
        "fetch",
        help="download a MedMNIST dataset (resumable, MD5-checked)",
        description="Download a 2D MedMNIST dataset from its official location into the data "
        "folder. An interrupted download resumes; the file is kept only if its MD5 matches "
        "the official table. Set PRIVADX_MEDMNIST_URL to use a mirror.",
    )
    fetch.add_argument("name", help="dataset name, e.g. pneumoniamnist, breastmnist, pathmnist")
    add_data_dir(fetch)
    fetch.add_argument("--size", type=int, default=28, choices=(28, 64, 128, 224))
    fetch.set_defaults(subparser=fetch, run=run_fetch)

    info = data_sub.add_parser(
        "info",
        help="describe a dataset file or folder",
        description="Show splits, image shape, classes and class counts of a MedMNIST .npz, "
        "a class folder of images or a CSV manifest, verifying MD5s of official files.",
    )
    info.add_argument("path", type=Path)
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(subparser=info, run=run_info)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return ExitCode.BAD_INPUT


def run_fetch(args: argparse.Namespace) -> int:
    """Download one dataset and print where it is."""
    from privadx.common.data.catalog import dataset_info
    from privadx.common.data.download import fetch_dataset
    from privadx.common.data.medmnist import default_data_dir

    info = dataset_info(args.name)
    progress = Progress(info.file_name(args.size))
    try:
        path = fetch_dataset(
            info, args.data_dir or default_data_dir(), size=args.size, progress=progress
        )
    finally:
        progress.close()
    print(path)
    return 0


def run_info(args: argparse.Namespace) -> int:
    """Print a description of a dataset file or folder."""
    description = describe(args.path)
    if args.json:
        print_json(description)
        return 0
    print(f"dataset: {description['name']}")
    print(f"image shape: {description['image_shape']}")
    print(f"classes: {', '.join(description['class_names'])}")
    for split, facts in description["splits"].items():
        counts = ", ".join(
            f"{n}={c}"
            for n, c in zip(description["class_names"], facts["class_counts"], strict=True)
        )
        print(f"  {split:<5} {facts['images']:>7} images  ({counts})")
    if description.get("md5_verified"):
        print("MD5: matches the official MedMNIST release")
    if description.get("skipped"):
        print(f"skipped {description['skipped']} unreadable files")
    return 0


def describe(path: Path) -> dict[str, Any]:
    """A JSON-ready description of a dataset at ``path``."""
    from privadx.common.data.local import load_local_dataset
    from privadx.common.data.medmnist import catalog_entry_for, load_npz
    from privadx.common.errors import DataError
    from privadx.common.preprocess import PreprocessSpec

    extra: dict[str, Any]
    if path.suffix.lower() == ".npz":
        ds = load_npz(path)
        splits = {s: getattr(ds, s) for s in ("train", "val", "test")}
        extra = {"md5_verified": catalog_entry_for(path) is not None}
        name = ds.name
    elif path.exists():
        report = load_local_dataset(path, PreprocessSpec(height=28, width=28, channels=1))
        splits = {"all": report.data}
        extra = {"skipped": len(report.skipped), "note": "images shown at 28x28 gray"}
        name = path.name
    else:
        raise DataError(f"{path}: no such file or folder")
    first = next(iter(splits.values()))
    return {
        "name": name,
        "image_shape": list(first.images.shape[1:]),
        "class_names": list(first.class_names),
        "splits": {
            s: {"images": len(d), "class_counts": d.class_counts()} for s, d in splits.items()
        },
        **extra,
    }
