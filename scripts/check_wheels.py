"""Do the light and ``[train]`` dependency sets resolve to wheels for 64-bit ARM devices?

For each supported CPython (3.10-3.13) this resolves the project's requirements (from
``pyproject.toml``, markers evaluated for the target) with ``uv pip compile --only-binary
:all:`` for a manylinux aarch64 target: Raspberry Pi OS 64-bit bookworm has glibc 2.36,
JetPack 6 (Ubuntu 22.04) 2.35, so the default target is ``aarch64-manylinux_2_35``. uv checks
every distribution's wheel tags against the target, so a set resolves only if every package
has a wheel for that Python and platform; the registry is whatever this machine reaches.

Usage: ``python scripts/check_wheels.py [--glibc 2.35] [--json out.json]``. Exit 0 when every
set that should resolve does. ``[train]`` on 3.12+ is reported as refused by design:
TensorFlow 2.14, the simulation's, has no wheel there, and the extra leaves it out.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
SHOWN = ("numpy", "onnxruntime", "pillow", "cryptography", "tensorflow", "tensorflow-cpu-aws")


def resolve(uv: str, python: str, extra: str | None, glibc: str) -> dict[str, object]:
    """The pinned wheel-only resolution of the light set (or ``extra``) for ``python``."""
    target = f"aarch64-manylinux_{glibc.replace('.', '_')}"
    cmd = [uv, "pip", "compile", "--quiet", "--no-header", "--no-annotate", "--only-binary",
           ":all:", "--python-version", python, "--python-platform", target,
           str(ROOT / "pyproject.toml")]  # fmt: skip
    if extra:
        cmd += ["--extra", extra]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    pins = [ln.strip() for ln in proc.stdout.splitlines() if "==" in ln]
    return {
        "ok": proc.returncode == 0,
        "seconds": round(time.monotonic() - t0, 1),
        "pins": pins,
        "error": proc.stderr.strip()[-800:] if proc.returncode else None,
    }


def main(argv: list[str] | None = None) -> int:
    """Check every supported Python; print one line per set and optionally write JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--glibc", default="2.35", help="the devices' glibc (default: %(default)s)")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    uv = shutil.which("uv")
    if uv is None:
        print("error: uv is not on PATH (scripts/env.sh installs it)", file=sys.stderr)
        return 2
    results: list[dict[str, object]] = []
    failed = False
    for python in PYTHONS:
        for name, extra in (("light", None), ("train", "train")):
            row: dict[str, object] = {"python": python, "set": name}
            row.update(resolve(uv, python, extra, args.glibc))
            pins = [str(x) for x in row["pins"]]  # type: ignore[attr-defined]
            has_tf = any(x.startswith("tensorflow==") for x in pins)
            if name == "train" and row["ok"] and not has_tf:
                row["refused"] = "TensorFlow 2.14 has no wheel for this Python"
                status = "refused"
            else:
                status = "ok" if row["ok"] else "FAILED"
                failed |= not row["ok"]
            results.append(row)
            shown = [x for x in pins if x.split("==")[0] in SHOWN]
            print(f"cp{python.replace('.', '')} aarch64 glibc {args.glibc} {name:5}: {status:7} "
                  f"{len(pins)} wheels ({' '.join(shown)}) in {row['seconds']} s")  # fmt: skip
            if row["error"]:
                print(f"    {row['error']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"glibc": args.glibc, "results": results}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
