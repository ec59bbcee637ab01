"""``privadx task``: write the task file a gateway needs, from a dataset's metadata."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

HELP = "write a task file (classes, input size, model) for `privadx gateway --task`"
DESCRIPTION = """\
A federation's gateway learns what to train from a small TOML task file, never from images.
`privadx task init --from NAME|PATH --out TASK.toml` writes one from a dataset's metadata: a
MedMNIST name needs no file at all; a .npz is read for its array headers and labels only; a
class folder gives its sub-folder names and a CSV manifest its labels (their input size is
--size, since sites resize every image). No pixel data is read. Edit the file as needed; the
gateway checks every field and names the one that is wrong.
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``task``."""
    p = sub.add_parser(
        "task",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    init = verbs.add_parser("init", help="write a task file from a dataset's metadata")
    init.add_argument(
        "--from", dest="source", required=True, help="MedMNIST name, .npz, class folder or .csv"
    )
    init.add_argument("--out", type=Path, required=True, help="task file to write (TOML)")
    init.add_argument("--arch", choices=("cnn", "mobilenet"), default="cnn")
    init.add_argument(
        "--size",
        type=_size,
        default=None,
        help="model input as HxW or HxWxC (default: the dataset's own, 28x28 gray for "
        "folders and manifests)",
    )
    init.add_argument("--force", action="store_true", help="overwrite an existing task file")
    init.set_defaults(subparser=init, run=run)


def _size(text: str) -> tuple[int, int, int]:
    match = re.fullmatch(r"(\d+)x(\d+)(?:x([13]))?", text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"expected HxW or HxWxC (C 1 or 3), got {text!r}")
    return int(match[1]), int(match[2]), int(match[3] or 1)


def run(args: argparse.Namespace) -> int:
    """Write the task file and say what it holds."""
    from models.spec import Architecture
    from privadx.common.errors import InputError
    from privadx.common.task import task_from_dataset

    if args.out.exists() and not args.force:
        raise InputError(f"{args.out} exists; pass --force to overwrite it")
    task = task_from_dataset(args.source, arch=Architecture(args.arch), size=args.size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    task.save(args.out)
    print(
        f"wrote {args.out}: {task.name}, {task.num_classes} classes "
        f"({', '.join(task.class_names)}), {task.height}x{task.width}x{task.channels}, "
        f"{task.arch}"
    )
    return 0
