"""Run ``privadx ARGS`` and record every file the Python process opens (audit hooks, PEP 578).

Usage: ``python tests/open_audit.py LOG privadx-args...``; each line of LOG is
``path<TAB>mode``. Used to show that the gateway opens no image file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> int:
    log_path, argv = sys.argv[1], sys.argv[2:]
    log = Path(log_path).open("w", encoding="utf-8", buffering=1)  # noqa: SIM115

    def hook(event: str, args: tuple[object, ...]) -> None:
        if event == "open" and isinstance(args[0], str | bytes | os.PathLike):
            log.write(f"{os.fsdecode(args[0])}\t{args[1]}\n")

    sys.addaudithook(hook)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from privadx.cli import main as cli

    return cli(argv)


if __name__ == "__main__":
    sys.exit(main())
