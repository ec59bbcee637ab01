"""``privadx``: federated learning on medical images, from simulation to bedside diagnosis.

Exit codes: :class:`privadx.common.errors.ExitCode` (``privadx --help`` lists them).
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

from privadx.commands import (
    certs,
    data,
    demo,
    diagnose,
    edge,
    export,
    gateway,
    simulate,
    task,
)
from privadx.common.compat import tomllib
from privadx.common.errors import ExitCode, InputError, PrivadxError, exit_code_lines

log = logging.getLogger("privadx")

SUBCOMMANDS = (data, simulate, task, export, diagnose, certs, gateway, edge, demo)

EPILOG = """\
roles:
  data scientist   privadx data fetch pneumoniamnist && privadx simulate --out runs/sim
  IT / operations  privadx gateway ... and privadx edge ... (MQTT federation)
  clinician        privadx diagnose model.onnx scan.dcm

exit codes: {codes}
"""


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (cheap: no heavy imports)."""
    parser = argparse.ArgumentParser(
        prog="privadx",
        description="Privacy-preserving federated learning on medical images.",
        epilog=EPILOG.format(codes=textwrap.fill(exit_code_lines(), 88)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def configure_logging(verbose: int, quiet: bool) -> None:
    """Log to stderr; quiet third-party chatter (TensorFlow, absl) unless -vv."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    if verbose < 2:
        import os

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        for noisy in ("absl", "tensorflow", "h5py", "matplotlib", "PIL", "tf2onnx"):
            logging.getLogger(noisy).setLevel(logging.ERROR)


def apply_config_file(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; values from ``--config FILE.toml`` fill in flags not given."""
    args = parser.parse_args(argv)
    config_path = getattr(args, "config", None)
    if config_path is None:
        return args
    try:
        table = tomllib.loads(Path(config_path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{config_path}: unreadable TOML config ({exc})") from exc
    subparser = args.subparser
    known = {a.dest for a in subparser._actions}
    values = {k.replace("-", "_"): v for k, v in table.items()}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(f"{config_path}: unknown settings {unknown}")
    subparser.set_defaults(**values)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = apply_config_file(parser, argv)
        configure_logging(args.verbose, args.quiet)
        return int(args.run(args))
    except PrivadxError as exc:
        print(f"privadx: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("privadx: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except Exception as exc:  # a bug, not the user's fault: one clear line, trace with -v
        log.debug("unexpected error", exc_info=True)
        print(
            f"privadx: internal error: {type(exc).__name__}: {exc} (run with -v for the traceback)",
            file=sys.stderr,
        )
        return ExitCode.UNEXPECTED


if __name__ == "__main__":
    sys.exit(main())
