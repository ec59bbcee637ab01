"""Memory and start-up footprint of the processes a device runs.

- The edge agent, as a device runs it: ``privadx demo`` runs a real federation (embedded
  broker, gateway and one ``privadx edge`` process per site) whose agents run in a separate
  virtual environment holding only ``privadx[train]`` (what a device installs; built here
  with uv from this checkout, files copied, not linked, so no other process shares their
  pages). This samples each edge process's resident set plus that of its child processes
  (``/proc/PID/status`` VmRSS, every 0.1 s) and splits the samples by what the agent's log
  says it is doing: training a round (from "training on N local images" to the update being
  sent), and between rounds.

  - One device training on 1,000 PneumoniaMNIST images (a one-site federation on the first
    1,000 training images), TensorFlow kept in the agent and with ``--low-memory``.
  - Secure aggregation: two devices of about 1,000 images each, each from its own copy of
    the environment (two agents of one environment would share TensorFlow's library pages,
    which the kernel then keeps for both).

- ``privadx diagnose`` on a folder of 500 test images (peak RSS of the process from
  ``wait4``) and its cold start (wall time of diagnosing one image, median of 5 runs).

Targets from the project's issues: diagnose <= 120 MB, edge agent <= 600 MB while training a
round of the CNN on about 1,000 images. Usage::

    uv run python scripts/bench_footprint.py --json runs/bench-footprint.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MB = 1024 * 1024
TRAINING = re.compile(r"^(\d\d:\d\d:\d\d) INFO edge\.agent: round (\d+): training on (\d+) local")
SENT = re.compile(
    r"^(\d\d:\d\d:\d\d) INFO edge\.agent: round (\d+): (sent update|trained; joining secure)"
)


def _rss_of(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(match.group(1)) * 1024 if match else None


def _edge_pids(out: Path) -> dict[str, int]:
    """The ``privadx edge`` processes of the demo writing under ``out`` (site -> pid)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv]
        if "edge" in args and "--site-id" in args and any(str(out) in a for a in args):
            found[args[args.index("--site-id") + 1]] = int(entry.name)
    return found


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (the low-memory mode's training processes)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(c) for c in task.read_text().split()]
        except OSError:
            continue
    return found


def _sample(
    out: Path, stop: threading.Event, samples: dict[str, list[tuple[float, int, int]]]
) -> None:
    """Every 0.1 s: each edge agent's RSS and the RSS of the agent plus its children."""
    while not stop.is_set():
        for site, pid in _edge_pids(out).items():
            own = _rss_of(pid)
            if own is not None:
                total = own + sum(_rss_of(c) or 0 for c in _children(pid))
                samples.setdefault(site, []).append((time.time(), total, own))
        time.sleep(0.1)


def _phases(log: Path) -> tuple[list[tuple[float, float]], int]:
    """Training windows (epoch seconds) from an edge log, and the site's number of images.

    The log has whole seconds, so each window is widened by a second on each side.
    """
    day = dt.datetime.now(dt.timezone.utc).date()

    def at(clock: str) -> float:
        t = dt.datetime.strptime(clock, "%H:%M:%S").time()
        return dt.datetime.combine(day, t, tzinfo=dt.timezone.utc).timestamp()

    starts: dict[int, float] = {}
    windows, images = [], 0
    for line in log.read_text(errors="replace").splitlines():
        if m := TRAINING.match(line):
            starts[int(m.group(2))] = at(m.group(1))
            images = int(m.group(3))
        elif (m := SENT.match(line)) and int(m.group(2)) in starts:
            windows.append((starts.pop(int(m.group(2))) - 1, at(m.group(1)) + 1))
    return windows, images


def device_env(root: Path) -> Path:
    """The interpreter of a virtual environment holding only ``privadx[train]``.

    Built once at ``root`` from this checkout's wheel; the installed files are copies, so
    their pages are this environment's own.
    """
    python = root / "bin" / "python"
    if python.exists():
        return python
    wheels = Path(tempfile.mkdtemp(prefix="privadx-wheel-"))
    _uv("build", "--wheel", "--out-dir", str(wheels), str(ROOT))
    _uv("venv", "--python", sys.executable, str(root))
    wheel = next(wheels.glob("*.whl"))
    _uv("pip", "install", "--link-mode", "copy", "--python", str(python), f"{wheel}[train]")
    return python


def _uv(*args: str) -> None:
    proc = subprocess.run(["uv", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"uv {args[0]} failed: {proc.stderr[-1000:]}")


def first_images(dataset: str, count: int, out: Path) -> Path:
    """A MedMNIST-format file whose training split is ``dataset``'s first ``count`` images."""
    import numpy as np

    from privadx.common.data.medmnist import resolve_dataset

    with np.load(resolve_dataset(dataset), allow_pickle=False) as arrays:
        parts = {k: arrays[k][:count] if k.startswith("train_") else arrays[k] for k in arrays}
    path = out / f"{dataset}-first-{count}.npz"
    np.savez(path, **parts)
    return path


def edge_footprint(
    data: Path, pythons: list[Path], *, sites: int, rounds: int, secure: bool, low_memory: bool
) -> dict[str, Any]:
    """Run the demo once and report each edge process's RSS by phase."""
    out = Path(tempfile.mkdtemp(prefix="privadx-footprint-"))
    cmd = [sys.executable, "-m", "privadx", "demo", "--dataset", str(data), "--sites", str(sites),
           "--alpha", "1000", "--rounds", str(rounds), "--local-epochs", "1", "--seed", "0",
           "--json", "--out", str(out)]  # fmt: skip
    for python in pythons:
        cmd += ["--edge-python", str(python)]
    if secure:
        cmd.append("--secure-aggregation")
    if low_memory:
        cmd.append("--low-memory")
    samples: dict[str, list[tuple[float, int, int]]] = {}
    stop = threading.Event()
    sampler = threading.Thread(target=_sample, args=(out, stop, samples), daemon=True)
    sampler.start()
    t0 = time.monotonic()
    # Run from the run folder: ``python -m`` in this checkout would import its modules, not
    # the device environment's installed ones.
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=out, check=False)
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"privadx demo failed ({proc.returncode}): {proc.stderr[-2000:]}")
    sites = {}
    for site, series in sorted(samples.items()):
        windows, images = _phases(out / "logs" / f"{site}.log")
        first_training = windows[0][0] if windows else float("inf")
        training = [any(a <= t <= b for a, b in windows) for t, _, _ in series]
        inside = [r for (_, r, _), yes in zip(series, training, strict=True) if yes]
        between = [r for (t, r, _), yes in zip(series, training, strict=True)
                   if not yes and t > first_training]  # fmt: skip
        alone = [own for (t, _, own), yes in zip(series, training, strict=True)
                 if not yes and t > first_training]  # fmt: skip
        sites[site] = {
            "images": images,
            # With --low-memory the training runs in a child: these include the children.
            "peak_mb": round(max(r for _, r, _ in series) / MB, 1),
            "agent_alone_peak_mb": round(max(own for _, _, own in series) / MB, 1),
            "training_peak_mb": round(max(inside) / MB, 1) if inside else None,
            "between_rounds_median_mb": _median_mb(between),
            "between_rounds_agent_alone_median_mb": _median_mb(alone),
            "samples": len(series),
            # Whole-second log times: each round's training takes this, within +-1 s.
            "training_seconds_median": (
                statistics.median(b - a - 2 for a, b in windows) if windows else None
            ),
        }
    seconds = round(time.monotonic() - t0, 1)
    return {"secure_aggregation": secure, "low_memory": low_memory, "seconds": seconds,
            "out": str(out), "sites": sites}  # fmt: skip


def _median_mb(values: list[int]) -> float | None:
    return round(statistics.median(values) / MB, 1) if values else None


def _run_measured(cmd: list[str]) -> tuple[float, int, int]:
    """Wall seconds, peak RSS (bytes) and exit status of one child process."""
    t0 = time.monotonic()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             cwd=tempfile.gettempdir())  # fmt: skip
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return time.monotonic() - t0, usage.ru_maxrss * 1024, child.returncode


def _versions(python: Path) -> dict[str, str]:
    """Python and TensorFlow versions of the device environment."""
    code = "import sys, tensorflow as tf; print(sys.version.split()[0], tf.__version__)"
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, check=False)  # fmt: skip
    words = proc.stdout.split()
    return {"python": words[0], "tensorflow": words[1]} if len(words) == 2 else {}


def diagnose_footprint(python: Path, model: Path, images: int) -> dict[str, Any]:
    """Peak RSS of diagnosing ``images`` PNGs, and the cold start of diagnosing one."""
    import numpy as np
    from PIL import Image

    from privadx.common.data.medmnist import load_npz, resolve_dataset

    folder = Path(tempfile.mkdtemp(prefix="privadx-diagnose-"))
    test = load_npz(resolve_dataset("pneumoniamnist")).test
    for i in range(images):
        Image.fromarray(np.squeeze(test.images[i % len(test.images)])).save(folder / f"{i}.png")
    base = [str(python), "-m", "privadx", "diagnose", str(model), "--allow-unsigned"]
    seconds, peak, code = _run_measured([*base, str(folder), "--json"])
    if code not in (0, 7):
        raise SystemExit(f"privadx diagnose failed ({code})")
    cold = [_run_measured([*base, str(folder / "0.png")])[0] for _ in range(5)]
    return {
        "images": images,
        "peak_rss_mb": round(peak / MB, 1),
        "seconds": round(seconds, 2),
        "cold_start_median_s": round(statistics.median(cold), 3),
        "cold_start_s": [round(c, 3) for c in cold],
    }


def table(result: dict[str, Any]) -> str:
    """The Markdown tables of a result (what ``docs/devices.md`` shows)."""
    rows = ["| mode | site (images) | peak, MB | training peak, MB "
            "| between rounds, MB (agent alone) | training s/round |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    for run in result["edge"]:
        mode = "secure aggregation" if run["secure_aggregation"] else "plain"
        mode += ", --low-memory" if run["low_memory"] else ""
        for site, s in run["sites"].items():
            alone = s.get("between_rounds_agent_alone_median_mb")
            rows.append(f"| {mode} | {site} ({s['images']}) | {s['peak_mb']} | "
                        f"{s['training_peak_mb']} | "
                        f"{s['between_rounds_median_mb']} ({alone}) | "
                        f"{s['training_seconds_median']} |")  # fmt: skip
    d = result["diagnose"]
    rows += ["", "| privadx diagnose | value |", "|---|---|",
             f"| peak RSS, {d['images']} images | {d['peak_rss_mb']} MB |",
             f"| wall time, {d['images']} images | {d['seconds']} s |",
             f"| cold start, one image (median of 5) | {d['cold_start_median_s']} s |"]  # fmt: skip
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Measure, print a summary and optionally write JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="demo rounds (default: %(default)s)")
    p.add_argument("--train-images", type=int, default=1000,
                   help="images each device trains on (default: %(default)s)")  # fmt: skip
    p.add_argument("--device-env", type=Path, default=ROOT / "runs" / "device-env",
                   help="where to build the devices' environment")  # fmt: skip
    p.add_argument("--images", type=int, default=500, help="images to diagnose")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--table-only", type=Path, metavar="JSON", help="print the tables of a result")
    args = p.parse_args(argv)
    from privadx.common.evaluation.holdout import DEFAULT_EVAL_FRACTION

    if args.table_only:
        print(table(json.loads(args.table_only.read_text())))
        return 0
    device = device_env(args.device_env)
    other = device_env(args.device_env.with_name(args.device_env.name + "-2"))
    work = Path(tempfile.mkdtemp(prefix="privadx-footprint-data-"))
    # Each agent holds a share of its images out for evaluation and trains on the rest.
    per_site = round(args.train_images / (1 - DEFAULT_EVAL_FRACTION))
    one = first_images("pneumoniamnist", per_site, work)
    two = first_images("pneumoniamnist", 2 * per_site, work)
    plan = [  # (training images, one interpreter per site, secure, low memory)
        (one, [device], False, False),
        (one, [device], False, True),
        (two, [device, other], True, False),
    ]
    runs = [
        edge_footprint(data, pythons, sites=len(pythons), rounds=args.rounds, secure=secure,
                       low_memory=low)
        for data, pythons, secure, low in plan
    ]  # fmt: skip
    model = Path(runs[0]["out"]) / "sites" / "site-0" / "model.onnx"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=ROOT, check=False).stdout.strip()  # fmt: skip
    result = {
        "date": dt.date.today().isoformat(),
        "commit": commit,
        "machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "device_env": _versions(device),
        "edge": runs,
        "diagnose": diagnose_footprint(device, model, args.images),
    }
    for run in result["edge"]:
        label = "secure" if run["secure_aggregation"] else "plain"
        label += " low-memory" if run["low_memory"] else ""
        for site, s in run["sites"].items():
            print(f"edge {label:17} {site} ({s['images']} images): training peak "
                  f"{s['training_peak_mb']} MB, between rounds {s['between_rounds_median_mb']} MB, "
                  f"(agent alone {s['between_rounds_agent_alone_median_mb']} MB), "
                  f"peak {s['peak_mb']} MB (agent alone {s['agent_alone_peak_mb']} MB), "
                  f"training {s['training_seconds_median']} s/round")  # fmt: skip
    d = result["diagnose"]
    print(f"diagnose {d['images']} images: peak RSS {d['peak_rss_mb']} MB in {d['seconds']} s; "
          f"cold start {d['cold_start_median_s']} s (median of 5)")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
