"""Run the real `privadx gateway` and `privadx edge` commands as processes, and kill them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from harness.mosquitto import GATEWAY_USER, Mosquitto
from tests.conftest import REPO


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "privadx", *args]


def _link(broker: Mosquitto, user: str) -> list[str]:
    identity = broker.identity(user)
    assert identity is not None, "process tests use the mutual-TLS broker"
    return ["--broker", broker.url(user), "--identity", str(identity), "--federation", "proc"]


def _spawn(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Run ``privadx ARGS`` with its output appended to ``log_path``."""
    log = log_path.open("ab")
    return subprocess.Popen(
        _cli(*args),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )


def start_gateway(
    broker: Mosquitto, out: Path, dataset: Path, *extra: str, log_name: str = "gateway.log"
) -> subprocess.Popen[bytes]:
    out.mkdir(parents=True, exist_ok=True)
    task = out.parent / f"{out.name}-task.toml"
    if not task.exists():
        from privadx.common.task import task_from_dataset

        task_from_dataset(str(dataset)).save(task)
    args = ["gateway", *_link(broker, GATEWAY_USER), "--task", str(task)]
    args += ["--eval-data", str(dataset), "--out", str(out)]
    return _spawn([*args, "--json", *extra], out.parent / f"{out.name}-{log_name}")


def start_edge(
    broker: Mosquitto, site: str, data: Path, model_dir: Path
) -> subprocess.Popen[bytes]:
    model_dir.mkdir(parents=True, exist_ok=True)
    args = ["edge", *_link(broker, site), "--site-id", site, "--data", str(data)]
    return _spawn(
        [*args, "--model-dir", str(model_dir), "--once"], model_dir.parent / f"{model_dir.name}.log"
    )


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (TFF's worker_binary under a gateway, for instance)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_hard(proc: subprocess.Popen[bytes]) -> None:
    """``kill -9`` a process and everything it started (no cleanup code runs)."""
    victims = [proc.pid, *descendants(proc.pid)]
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(10)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            kill_hard(proc)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def committed_round(out: Path) -> int:
    """The last round the gateway's checkpoint has committed (-1 before the first commit)."""
    try:
        return int(json.loads((out / "checkpoint" / "run.json").read_text())["round"])
    except (OSError, ValueError, KeyError):
        return -1


def pending_updates(out: Path, round_num: int) -> list[str]:
    folder = out / "checkpoint" / "pending" / f"round-{round_num}"
    return sorted(p.stem for p in folder.glob("*.npz"))
