"""Helpers shared by the subcommands: argument types, output, progress."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def non_negative_int(text: str) -> int:
    """Argparse type: a whole number of at least 0."""
    return _whole_number(text, minimum=0)


def positive_int(text: str) -> int:
    """Argparse type: an integer of at least 1."""
    return _whole_number(text, minimum=1)


def _whole_number(text: str, *, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected at least {minimum}, got {value}")
    return value


def positive_float(text: str) -> float:
    """Argparse type: a number above 0."""
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """Argparse type: a finite number of at least 0."""
    value = _number(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number of at least 0, got {value}")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    """The ``--data-dir`` option shared by commands that find datasets by name."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder of downloaded datasets (default: $PRIVADX_DATA or ~/.local/share/privadx)",
    )


def print_json(obj: Any) -> None:
    """Write ``obj`` as JSON on stdout."""
    from privadx.common.runlog import json_ready

    json.dump(json_ready(obj), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


class Progress:
    """A byte-count progress line on stderr (only when stderr is a terminal)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int | None) -> None:
        """Report ``done`` of ``total`` bytes."""
        if not self.tty:
            return
        pct = f" {100 * done / total:5.1f}%" if total else ""
        sys.stderr.write(f"\r{self.label}: {done / 1e6:8.2f} MB{pct}")
        sys.stderr.flush()

    def close(self) -> None:
        """End the progress line."""
        if self.tty:
            sys.stderr.write("\n")
