"""Flower's Deployment Engine on this machine: a SuperLink, one SuperNode per site, `flwr run`.

The peer comparison (``scripts/bench_flower.py``) runs the Flower App in
``scripts/flower_app`` (PrivaDx's model, split and local training; Flower's FedAvg) the way
Flower deploys: a SuperLink, a SuperNode per site that runs the ClientApp in a subprocess for
each message, and the ServerApp started by ``flwr run``. The sites reach the SuperLink over
TLS (the same kind of CA and server certificate as a PrivaDx broker's) through a
:class:`~harness.tcp_relay.TcpRelay` that counts the bytes. Flower lives in an environment of
its own (it needs a newer protobuf than TensorFlow 2.14 allows, so that environment has
TensorFlow 2.20 with the Keras 2 package); PrivaDx's code is on its ``PYTHONPATH``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from harness.mosquitto import free_port
from harness.tcp_relay import TcpRelay

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "scripts" / "flower_app"
log = logging.getLogger("bench")

FLOWER_REQUIREMENTS = (
    "flwr==1.42.0",
    "tensorflow-cpu==2.20.0",
    "tf-keras==2.20.1",  # Keras 2, which PrivaDx's models are written for
    "pillow>=10",
    "pydicom>=3.0",
    "cryptography>=42",
    "onnx>=1.15",  # the server scores each round's model as PrivaDx's gateway does: in
    "onnxruntime>=1.17",  # ONNX Runtime, from the graph PrivaDx writes directly
)
MARKER = "PRIVADX_FLOWER_PEER"
"""Environment variable every process of one deployment carries (to stop them all)."""


def flower_env(folder: Path) -> Path:
    """The ``bin`` folder of a Python environment with Flower (created with ``uv`` if absent)."""
    python = folder / "bin" / "python"
    if not python.exists():
        uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        subprocess.run([uv, "venv", "-q", "--python", version, str(folder)], check=True)
        subprocess.run(
            [uv, "pip", "install", "-q", "--python", str(python), *FLOWER_REQUIREMENTS],
            check=True,
        )
    return python.parent


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Flower process exited with {proc.returncode} while starting")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def _stop_marked(marker: str) -> None:
    """Stop every process whose environment carries ``MARKER=marker`` (Flower detaches some)."""
    needle = f"{MARKER}={marker}".encode()
    for _ in range(2):
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                if needle in (proc / "environ").read_bytes().split(b"\0"):
                    os.kill(int(proc.name), signal.SIGKILL)
        time.sleep(0.5)


def run_flower(
    bin_dir: Path, spec: dict[str, Any], work: Path, *, timeout: float
) -> dict[str, Any]:
    """One federation under Flower's Deployment Engine; its timings, metrics and bytes.

    ``spec`` is the App's settings (see ``scripts/flower_app/privadx_flower/task.py``) less
    ``out``, which this sets. Total seconds run from ``flwr run`` to the last round's test
    metrics; bytes are those between the SuperNodes and the SuperLink over that time.
    """
    from privadx.common.trust.federation import init_federation

    work.mkdir(parents=True, exist_ok=True)
    home, out = work / "flwr-home", work / "result.json"
    marker = uuid.uuid4().hex
    port = free_port()
    pki = init_federation(work / "pki", federation="flower", hosts=["127.0.0.1"], port=port,
                          bind="127.0.0.1", sites=[])  # fmt: skip
    tls = pki.root / "broker"
    home.mkdir()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "bench"\n\n[superlink.bench]\naddress = "127.0.0.1:{port}"\n'
        f'root-certificates = "{tls / "ca.pem"}"\n'
    )
    spec_file = work / "spec.json"
    spec_file.write_text(json.dumps({**spec, "out": str(out)}))
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{APP}",
        "FLWR_HOME": str(home),
        "TF_USE_LEGACY_KERAS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        MARKER: marker,
    }
    logs: list[Any] = []

    def start(name: str, *argv: str) -> subprocess.Popen[bytes]:
        logs.append((work / f"{name}.log").open("wb"))
        return subprocess.Popen(
            [str(bin_dir / argv[0]), *argv[1:]], env=env, cwd=work,
            stdout=logs[-1], stderr=subprocess.STDOUT,
        )  # fmt: skip

    procs: list[subprocess.Popen[bytes]] = []
    try:
        superlink = ["flower-superlink", "--port", str(port),
                     "--database", str(work / "superlink.db"),
                     "--ssl-certfile", str(tls / "server.pem"),
                     "--ssl-keyfile", str(tls / "server.key"),
                     "--ssl-ca-certfile", str(tls / "ca.pem")]  # fmt: skip
        procs.append(start("superlink", *superlink))
        _wait_port(port, procs[0])
        with TcpRelay(port) as relay:
            for i in range(spec["sites"]):
                supernode = ["flower-supernode", "--superlink", f"127.0.0.1:{relay.port}",
                             "--root-certificates", str(tls / "ca.pem"),
                             "--port", str(free_port()),
                             "--node-config", f"partition-id={i}"]  # fmt: skip
                procs.append(start(f"supernode-{i}", *supernode))
            time.sleep(5)  # the SuperNodes register; the ServerApp also waits for all
            before = relay.total
            started = time.time()
            # --stream: flwr prints the ServerApp's log and returns when the run ends.
            with (work / "run.log").open("wb") as run_log:
                subprocess.run(
                    [str(bin_dir / "flwr"), "run", str(APP), "bench", "--stream",
                     "--run-config", f'spec="{spec_file}"'],
                    env=env, cwd=work, stdout=run_log, stderr=subprocess.STDOUT,
                    timeout=timeout,
                )  # fmt: skip
            if not out.exists():
                tail = (work / "run.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"Flower run gave no result (logs in {work}):\n{tail}")
            carried = relay.total - before
        result = json.loads(out.read_text())
    finally:
        for p in procs:
            p.terminate()
        _stop_marked(marker)
        for f in logs:
            f.close()
    rounds = result["rounds"]
    return {
        "round_seconds": [r["seconds"] for r in rounds],
        "total_seconds": result["finished_at"] - started,
        "bytes": carried,
        "bytes_per_round": carried / len(rounds),
        "accuracy": rounds[-1]["accuracy"],
        "auc": rounds[-1]["auc"],
        "per_round": rounds,
        "train_metrics": result["train_metrics"],
    }
