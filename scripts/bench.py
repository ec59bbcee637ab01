"""PrivaDx benchmark suite: every figure is a ratio measured side by side in the same run.

Sections (``--only`` picks some):

- ``aggregation``: the gateway's streaming weighted mean (gateway/streaming.py) over 10, 100
  and 1000 updates of a 2,000,000-value model, against ``np.stack`` + ``np.average`` and
  against the memory-bandwidth floor (one ``np.copyto`` of every update's bytes); time and
  peak memory (tracemalloc) of each.
- ``encodings``: bytes of one update message for each update encoding against the raw
  float32 size of the CNN's weights, and the protocol overhead (envelope, chunk headers,
  signature) against the raw tensor bytes.
- ``inference``: ONNX Runtime fp32 against Keras (``tf.function`` and ``model.predict``) per
  image at batch 1 and 32 for the CNN, and int8 against fp32.
- ``cold_start``: ``privadx diagnose`` on one image, process start to exit, against a
  minimal TensorFlow script that loads the same model as Keras and classifies the same image.
- ``round_overhead``: 10 and 50 edge agents over a real Mosquitto (mutual TLS, signed
  messages; the test harness's broker setup), 32 images each, 6 rounds without evaluation:
  the wall time of rounds 2 to 5 (start to next start) against local training time. The
  agents run as threads of one process and local training holds a process-wide lock, so
  training is serialized: the overhead is the round's wall time minus the sum of the sites'
  training times (with one device per site, as deployed, it would be minus the slowest one).
- ``flower``: the peer comparison. Flower (``flwr``, installed by this script into its own
  environment with ``uv``, never a PrivaDx dependency) runs the same model, split and local
  training (``scripts/flower_peer.py``) next to a PrivaDx run over Mosquitto with plain FedAvg:
  PneumoniaMNIST, 10 sites, 5 rounds x 1 local epoch, both evaluating on the test split
  after every round, two runs of each side in turn; wall time per round (from the first
  local training to the last round's test metrics, divided by the rounds, over both runs)
  and final accuracy side by side.
- ``encoding_accuracy``: PneumoniaMNIST, 10 agents over Mosquitto, 5 rounds x 1 local epoch,
  same split, with float32, float16 and int8 updates, three federation seeds each: final
  accuracy and AUC (mean over seeds, and per seed against float32) and update bytes per
  site and round.

Writes ``bench.json`` and ``bench.md`` to ``--out`` and prints the Markdown.

Usage: uv run python scripts/bench.py --out runs/bench
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench")

SECTIONS = (
    "aggregation",
    "encodings",
    "inference",
    "cold_start",
    "round_overhead",
    "flower",
    "encoding_accuracy",
)
FLOWER = "flwr==1.13.0"
MODEL_VALUES = 2_000_000


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--updates", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--dataset", default="pneumoniamnist")
    p.add_argument("--out", type=Path, default=Path("runs/bench"))
    return p.parse_args()


def trunc(value: float, digits: int) -> str:
    """``value`` truncated (never rounded up) to ``digits`` decimals."""
    from privadx.common.figures import truncate

    return truncate(value, digits)


def best_of(fn: Callable[[], Any], repeat: int) -> float:
    """The fastest of ``repeat`` timed calls after one untimed warm-up call (seconds)."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def interleaved_best(fns: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """The fastest of ``repeat`` timed calls of each function, taking turns (seconds).

    Each is warmed up once, then the calls alternate, so whatever the machine does meanwhile
    weighs on both sides of a ratio alike instead of on one.
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: min(t) for name, t in times.items()}


def peak_bytes(fn: Callable[[], Any]) -> int:
    """Peak traced allocation of ``fn`` above what was allocated before (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak - base


# --- aggregation -------------------------------------------------------------------------
def _model_shapes() -> dict[str, tuple[int, ...]]:
    """A 2,000,000-value model: conv kernels, a large dense layer, biases."""
    shapes = {"conv1": (3, 3, 1, 64), "conv2": (3, 3, 64, 128), "dense": (1950, 980), "bias": ()}
    used = sum(int(np.prod(s)) for k, s in shapes.items() if k != "bias")
    shapes["bias"] = (MODEL_VALUES - used,)
    return shapes


def aggregation(counts: list[int]) -> list[dict[str, Any]]:
    """Streaming mean vs stack + average vs the copy floor, per number of updates."""
    from gateway.streaming import StreamingMean

    rng = np.random.default_rng(0)
    shapes = _model_shapes()
    base = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    # Updates come from a pool larger than the caches, so every one is read from memory.
    pool = [
        {k: (v + rng.normal(scale=0.01, size=v.shape)).astype(np.float32) for k, v in base.items()}
        for _ in range(8)
    ]
    flat_pool = [np.concatenate([u[k].ravel() for k in base]) for u in pool]
    update_bytes = MODEL_VALUES * 4
    results = []
    acc = StreamingMean(base)  # the gateway keeps one for the run and resets it each round
    for n in counts:
        weights = [float(10 + i % 7) for i in range(n)]

        def streaming(n: int = n, weights: list[float] = weights) -> None:
            acc.reset(base)
            for i in range(n):
                acc.add(pool[i % len(pool)], weights[i])
            acc.as_single_update()

        def floor(n: int = n) -> None:
            dest = np.empty(MODEL_VALUES, np.float32)
            for i in range(n):
                np.copyto(dest, flat_pool[i % len(pool)])

        def stacked(n: int = n, weights: list[float] = weights) -> None:
            stack = np.stack([flat_pool[i % len(pool)] for i in range(n)])
            np.average(stack, axis=0, weights=np.asarray(weights, np.float32))

        row: dict[str, Any] = {"updates": n, "update_bytes": update_bytes}
        repeat = 5 if n <= 100 else 3
        best = interleaved_best({"streaming": streaming, "floor": floor}, repeat)
        row["streaming_s"], row["floor_s"] = best["streaming"], best["floor"]
        # The accumulator's own buffers are allocated once (outside the traced call): count them.
        row["streaming_peak_bytes"] = peak_bytes(streaming) + acc.buffer_bytes
        stack_need = 2 * n * update_bytes  # the stack plus np.average's weighted copy
        if stack_need < 0.6 * _available_memory():
            row["stack_s"] = best_of(stacked, 3 if n <= 100 else 1)
            row["stack_peak_bytes"] = peak_bytes(stacked)
        else:
            row["stack_skipped"] = f"needs about {stack_need / 2**30:.1f} GiB"
        row["streaming_vs_floor"] = row["streaming_s"] / row["floor_s"]
        if "stack_s" in row:
            row["streaming_vs_stack"] = row["streaming_s"] / row["stack_s"]
        row["streaming_gb_per_s"] = n * update_bytes / row["streaming_s"] / 1e9
        row["floor_gb_per_s"] = n * update_bytes / row["floor_s"] / 1e9
        log.warning("aggregation %d updates: %s", n, row)
        results.append(row)
    return results


def _available_memory() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


# --- encodings ---------------------------------------------------------------------------
def encodings(dataset: str) -> dict[str, Any]:
    """Update message bytes per encoding, and protocol overhead, for the CNN."""
    from models.architectures import build_model
    from models.spec import Architecture, ModelSpec
    from models.weights import get_weights
    from privadx.common.wire import envelope as wire
    from privadx.common.wire.chunks import split
    from privadx.common.wire.messages import update_envelope
    from privadx.common.wire.update_codec import Encoding

    spec = ModelSpec(arch=Architecture.CNN, height=28, width=28, channels=1, num_classes=2)
    base = get_weights(build_model(spec, seed=0))
    rng = np.random.default_rng(0)
    trained = {
        k: (v + rng.normal(scale=0.01, size=v.shape)).astype(np.float32) for k, v in base.items()
    }
    raw = sum(v.nbytes for v in base.values())
    signer = _throwaway_signer()
    rows = {}
    for encoding in Encoding:
        env = update_envelope(
            run="run-1",
            round_num=1,
            site="site-0",
            weights=trained,
            base=base,
            encoding=encoding,
            examples=470,
            metrics={"loss": 0.3, "accuracy": 0.9, "seconds": 12.5},
            base_model="0" * 64,
        )
        unsigned = sum(len(wire.to_bytes(c)) for c in split(env))
        signed = sum(len(wire.to_bytes(c)) for c in split(signer.sign_envelope(env)))
        rows[str(encoding)] = {
            "tensor_payload_bytes": len(env.payload),
            "message_bytes_unsigned": unsigned,
            "message_bytes_signed": signed,
            "vs_raw_float32": signed / raw,
            "overhead_vs_payload": signed / len(env.payload) - 1,
        }
    return {"raw_float32_bytes": raw, "values": sum(v.size for v in base.values()), **rows}


def _throwaway_signer() -> Any:
    """A signer from a temporary federation CA (the real certificate chain's size)."""
    from privadx.common.trust.federation import init_federation
    from privadx.common.trust.identity import Identity

    folder = Path(tempfile.mkdtemp())
    pki = init_federation(
        folder, federation="bench", hosts=["localhost"], port=8883, sites=["site-0"]
    )
    return Identity.load(pki.site("site-0")).signer


# --- inference ---------------------------------------------------------------------------
def inference(dataset: str, work: Path) -> dict[str, Any]:
    """ONNX Runtime fp32 / int8 vs Keras per image, batch 1 and 32, on real test images."""
    import tensorflow as tf

    from edge.onnx_model import OnnxClassifier
    from privadx.common.data.medmnist import load_npz, resolve_dataset
    from privadx.common.preprocess import to_model_input

    weights = _trained_weights(dataset, work)
    model_path, int8_path = work / "model.onnx", work / "model.int8.onnx"
    subprocess.run(
        [sys.executable, "-m", "privadx", "export", str(weights), "--out", str(model_path),
         "--int8", "--verify-data", dataset],
        check=True, capture_output=True,
    )  # fmt: skip
    from models.rebuild import model_from_weights
    from privadx.common.weights_io import load_weights

    arrays, meta = load_weights(weights)
    keras_model, preprocess = model_from_weights(arrays, meta)
    test = load_npz(resolve_dataset(dataset, None)).test
    tf2onnx_path = _tf2onnx_export(keras_model, model_path, work / "model.tf2onnx.onnx")
    fp32, int8 = OnnxClassifier(model_path), OnnxClassifier(int8_path)
    via_tf2onnx = OnnxClassifier(tf2onnx_path)
    serve = tf.function(lambda x: keras_model(x, training=False))
    out: dict[str, Any] = {"threads": fp32.session.get_session_options().intra_op_num_threads}
    for batch in (1, 32):
        out[f"batch_{batch}"] = _time_batch(
            test.images[:batch], to_model_input(test.images[:batch], preprocess), fp32, int8,
            serve, keras_model, via_tf2onnx,
        )  # fmt: skip
    out["fp32_bytes"] = model_path.stat().st_size
    out["int8_bytes"] = int8_path.stat().st_size
    return out


def _tf2onnx_export(keras_model: Any, exported: Path, out: Path) -> Path:
    """The same weights converted by tf2onnx (what export wrote before the direct graph).

    It gets the exported file's metadata, so that OnnxClassifier loads it.
    """
    import onnx

    from models.onnx_export import tf2onnx_graph

    proto = tf2onnx_graph(keras_model)
    proto.metadata_props.extend(onnx.load(exported).metadata_props)
    out.write_bytes(proto.SerializeToString())
    return out


def _time_batch(
    images: np.ndarray,
    x: np.ndarray,
    fp32: Any,
    int8: Any,
    serve: Any,
    keras_model: Any,
    via_tf2onnx: Any,
) -> dict[str, float]:
    """Seconds per image of each runtime on one batch (best of many calls)."""
    batch = len(images)
    serve(x)  # trace once
    n = 200 if batch == 1 else 30
    per = {
        "onnx_fp32": best_of(lambda: fp32.logits(images), n) / batch,
        "onnx_fp32_tf2onnx": best_of(lambda: via_tf2onnx.logits(images), n) / batch,
        "onnx_int8": best_of(lambda: int8.logits(images), n) / batch,
        "keras_tf_function": best_of(lambda: serve(x), n) / batch,
        "keras_predict": best_of(lambda: keras_model.predict(x, verbose=0), n // 4) / batch,
    }
    return {
        **{f"{k}_s_per_image": v for k, v in per.items()},
        "onnx_vs_tf_function": per["onnx_fp32"] / per["keras_tf_function"],
        "onnx_vs_predict": per["onnx_fp32"] / per["keras_predict"],
        "int8_vs_fp32": per["onnx_int8"] / per["onnx_fp32"],
        "direct_vs_tf2onnx": per["onnx_fp32"] / per["onnx_fp32_tf2onnx"],
    }


def _trained_weights(dataset: str, work: Path) -> Path:
    """A briefly trained CNN (2-site simulation, 2 rounds) to export and time."""
    out = work / "sim"
    subprocess.run(
        [sys.executable, "-m", "privadx", "simulate", "--dataset", dataset, "--sites", "2",
         "--partition", "iid", "--rounds", "2", "--local-epochs", "1", "--no-export",
         "--out", str(out)],
        check=True, capture_output=True,
    )  # fmt: skip
    return out / "weights.npz"


# --- cold start --------------------------------------------------------------------------
TF_SCRIPT = """
import sys, numpy as np
from PIL import Image
import tensorflow as tf
model = tf.keras.models.load_model(sys.argv[1], compile=False)
x = np.asarray(Image.open(sys.argv[2]), np.float32)[None, :, :, None] / 255.0
print(int(np.argmax(model(x, training=False).numpy(), axis=1)[0]))
"""


def cold_start(dataset: str, work: Path) -> dict[str, Any]:
    """Process start to exit: ``privadx diagnose`` vs a minimal TensorFlow script."""
    from PIL import Image

    from models.rebuild import model_from_weights
    from privadx.common.data.medmnist import load_npz, resolve_dataset
    from privadx.common.weights_io import load_weights

    weights = work / "sim" / "weights.npz"
    if not weights.exists():
        _trained_weights(dataset, work)
    model_path = work / "model.onnx"
    if not model_path.exists():
        subprocess.run(
            [sys.executable, "-m", "privadx", "export", str(weights), "--out", str(model_path),
             "--verify-data", dataset],
            check=True, capture_output=True,
        )  # fmt: skip
    arrays, meta = load_weights(weights)
    keras_model, _ = model_from_weights(arrays, meta)
    keras_path = work / "model.keras"
    keras_model.save(keras_path)
    image = work / "scan.png"
    first = load_npz(resolve_dataset(dataset, None)).test.images[0]
    Image.fromarray(first[..., 0] if first.shape[-1] == 1 else first).save(image)
    script = work / "tf_diagnose.py"
    script.write_text(TF_SCRIPT)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    privadx = [sys.executable, "-m", "privadx", "diagnose", str(model_path), str(image),
               "--allow-unsigned"]  # fmt: skip
    tf_cmd = [sys.executable, str(script), str(keras_path), str(image)]
    runs: dict[str, list[float]] = {"privadx_diagnose": [], "tensorflow_script": []}
    for _ in range(5):  # interleaved, so drift affects both alike
        for name, cmd in (("privadx_diagnose", privadx), ("tensorflow_script", tf_cmd)):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=env)
            runs[name].append(time.perf_counter() - t0)
    d, t = statistics.median(runs["privadx_diagnose"]), statistics.median(runs["tensorflow_script"])
    return {"privadx_diagnose_s": d, "tensorflow_script_s": t, "ratio": d / t, "runs": runs}


# --- federations over Mosquitto ------------------------------------------------------------
def _federate(sites: list[Any], npz: Path, root: Path, **gateway_kw: Any) -> Any:
    sys.path.insert(0, str(ROOT))  # the test harness starts the broker and the agents
    from harness.federation import federate

    return federate(root, sites, dataset=str(npz), **gateway_kw)


def _records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _wall_seconds(records: list[dict[str, Any]]) -> list[float]:
    """Each round's wall time, from its start to the next round's start.

    That is the announcement, training, aggregation, the checkpoint, publishing the model and
    everything else the gateway does in between. The last round ends when its model is
    evaluated (or closed, without evaluation).
    """
    starts = [r["started_at"] for r in records]
    last = records[-1]
    return [b - a for a, b in itertools.pairwise(starts)] + [
        last.get("evaluated_at", last["closed_at"]) - last["started_at"]
    ]


ROUNDS_TIMED = 4
"""Rounds the overhead benchmark measures (2 to 5); it runs two more."""


def round_overhead(dataset: str, work: Path) -> list[dict[str, Any]]:
    """Protocol overhead per round for 10 and 50 agents (see the module docstring)."""
    from models.settings import LocalTraining
    from privadx.common.data.medmnist import resolve_dataset

    sys.path.insert(0, str(ROOT))
    from harness.federation import split_sites

    npz = resolve_dataset(dataset, None)
    rows = []
    for agents in (10, 50):
        sites = [s.subset(np.arange(32)) for s in split_sites(npz, agents, alpha=100.0, seed=0)]
        root = work / f"overhead-{agents}"
        root.mkdir()
        result = _federate(
            sites,
            npz,
            root,
            rounds=ROUNDS_TIMED + 2,
            seed=0,
            evaluate=False,
            export_onnx=False,
            training=LocalTraining(local_epochs=1),
        )
        records = _records(result.out)
        rounds = []
        # Rounds 2 to 5, start to start: round 1 includes TensorFlow's first tracing, and
        # the last round has no following start.
        for r, wall in list(zip(records, _wall_seconds(records), strict=True))[1:-1]:
            training = [m["train_seconds"] for m in r["site_metrics"].values()]
            rounds.append(
                {
                    "round": r["round"],
                    "wall_s": wall,
                    "training_sum_s": sum(training),
                    "training_max_s": max(training),
                    "overhead_s": wall - sum(training),
                    "overhead_share": (wall - sum(training)) / wall,
                }
            )
        rows.append({"agents": agents, "rounds": rounds})
        log.warning("round overhead %d agents: %s", agents, rounds)
    return rows


def flower(dataset: str, work: Path) -> dict[str, Any]:
    """Flower and PrivaDx on the same federation, side by side."""
    import shutil

    from models.settings import LocalTraining
    from privadx.common.data.medmnist import resolve_dataset
    from tff_core.robust import AggregationRule

    sys.path.insert(0, str(ROOT))
    from harness.federation import split_sites

    npz = resolve_dataset(dataset, None)
    env = work / "flower-env"
    uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(env)], check=True)
    python = env / "bin" / "python"
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(python), f"{ROOT}[train]", FLOWER],
        check=True,
    )
    rounds, sites_n = FLOWER_ROUNDS, 10
    sites = split_sites(npz, sites_n, alpha=0.5, seed=0)
    flower_runs, our_runs = [], []
    for run in range(FLOWER_RUNS):  # alternating, so both sides see the machine alike
        proc = subprocess.run(
            [str(python), str(ROOT / "scripts" / "flower_peer.py"), "--npz", str(npz),
             "--sites", str(sites_n), "--rounds", str(rounds)],
            check=True, capture_output=True, text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )  # fmt: skip
        flower_runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        root = work / f"privadx-peer-{run}"
        root.mkdir()
        result = _federate(
            sites,
            npz,
            root,
            rounds=rounds,
            seed=0,
            export_onnx=False,
            aggregation=AggregationRule.MEAN,
            training=LocalTraining(local_epochs=1),
            eval_fraction=0.0,  # the Flower peer trains on every image of a site, so do we
        )
        our_runs.append(
            {
                "round_seconds": _wall_seconds(_records(result.out)),
                "accuracy": result.summary["accuracy"],
                "auc": result.summary["auc"],
            }
        )
    mean = statistics.mean
    flower_rounds = [t for r in flower_runs for t in r["round_seconds"]]
    our_rounds = [t for r in our_runs for t in r["round_seconds"]]
    return {
        "flower": {**flower_runs[-1], "round_seconds": flower_rounds, "runs": flower_runs},
        "privadx": {**our_runs[-1], "round_seconds": our_rounds, "runs": our_runs},
        "round_time_ratio": mean(our_rounds) / mean(flower_rounds),
    }


FLOWER_ROUNDS = 5
FLOWER_RUNS = 2
"""Runs of each side in the peer comparison. One run's rounds vary by about a second on six
(three runs of 3 rounds here gave ratios of 0.919, 0.938 and 1.017), and round 1, which
traces every site's training step, weighs most in a short run."""


ENCODING_SEEDS = (0, 1, 2)
"""Federation seeds (initial model, shuffling, augmentation, dropout) of the encoding runs:
accuracy at a chosen threshold moves by about a point between runs whose weights differ by
float rounding, so one run per encoding cannot resolve a half-point effect."""


def encoding_accuracy(dataset: str, work: Path) -> dict[str, Any]:
    """Final accuracy and bytes per update with each update encoding, same runs otherwise."""
    from models.settings import LocalTraining
    from privadx.common.data.medmnist import resolve_dataset
    from privadx.common.wire.update_codec import Encoding

    sys.path.insert(0, str(ROOT))
    from harness.federation import split_sites

    npz = resolve_dataset(dataset, None)
    sites = split_sites(npz, 10, alpha=0.5, seed=0)
    out: dict[str, Any] = {}
    for encoding in (Encoding.FLOAT32, Encoding.FLOAT16, Encoding.INT8):
        runs = []
        for seed in ENCODING_SEEDS:
            root = work / f"encoding-{encoding}-{seed}"
            root.mkdir()
            result = _federate(
                sites,
                npz,
                root,
                rounds=5,
                seed=seed,
                export_onnx=False,
                training=LocalTraining(local_epochs=1, encoding=encoding),
            )
            records = _records(result.out)
            per_round = [statistics.median(r["update_bytes"].values()) for r in records]
            runs.append(
                {
                    "seed": seed,
                    "accuracy": result.summary["accuracy"],
                    "auc": result.summary["auc"],
                    "update_payload_bytes_median": statistics.median(per_round),
                }
            )
            log.warning("encoding %s: %s", encoding, runs[-1])
        out[str(encoding)] = {
            "runs": runs,
            "accuracy": statistics.mean(r["accuracy"] for r in runs),
            "auc": statistics.mean(r["auc"] for r in runs),
            "update_payload_bytes_median": statistics.median(
                r["update_payload_bytes_median"] for r in runs
            ),
        }
    base = out["float32"]
    for row in out.values():
        row["accuracy_points_vs_float32"] = 100 * (row["accuracy"] - base["accuracy"])
        row["auc_points_vs_float32"] = 100 * (row["auc"] - base["auc"])
        row["accuracy_points_per_seed"] = [
            100 * (r["accuracy"] - b["accuracy"])
            for r, b in zip(row["runs"], base["runs"], strict=True)
        ]
        row["bytes_vs_float32"] = (
            row["update_payload_bytes_median"] / base["update_payload_bytes_median"]
        )
    return out


# --- report ------------------------------------------------------------------------------
def markdown(report: dict[str, Any]) -> str:
    lines = ["| benchmark | measured | ratio | target |", "|---|---|---|---|"]
    for row in report.get("aggregation", []):
        n = row["updates"]
        lines.append(
            f"| aggregate {n} updates of 2M values, streaming vs copy floor | "
            f"{trunc(row['streaming_s'], 3)} s vs {trunc(row['floor_s'], 3)} s "
            f"({trunc(row['streaming_gb_per_s'], 1)} vs {trunc(row['floor_gb_per_s'], 1)} GB/s) | "
            f"{trunc(row['streaming_vs_floor'], 2)}x | <= 3x |"
        )
        if "stack_s" in row:
            lines.append(
                f"| aggregate {n} updates, streaming vs np.stack + np.average | "
                f"{trunc(row['streaming_s'], 3)} s vs {trunc(row['stack_s'], 3)} s; peak "
                f"{row['streaming_peak_bytes'] / 2**20:.0f} MiB vs "
                f"{row['stack_peak_bytes'] / 2**20:.0f} MiB | "
                f"{trunc(row['streaming_vs_stack'], 2)}x time, "
                f"{trunc(row['streaming_peak_bytes'] / row['stack_peak_bytes'], 3)}x memory | |"
            )
        else:
            lines.append(
                f"| aggregate {n} updates, streaming peak memory | "
                f"{row['streaming_peak_bytes'] / 2**20:.0f} MiB (stack baseline not run: "
                f"{row['stack_skipped']}) | | |"
            )
    enc = report.get("encodings")
    if enc:
        for name in ("float32", "float16", "int8"):
            e = enc[name]
            lines.append(
                f"| update message, {name} (signed, chunked) vs raw float32 weights | "
                f"{e['message_bytes_signed']:,} B vs {enc['raw_float32_bytes']:,} B | "
                f"{trunc(e['vs_raw_float32'], 4)}x | {'<= 0.51x' if name == 'float16' else ''} |"
            )
        e = enc["float32"]
        lines.append(
            f"| protocol overhead (envelope, chunk headers, signature) vs tensor payload | "
            f"{e['message_bytes_signed'] - e['tensor_payload_bytes']:,} B on "
            f"{e['tensor_payload_bytes']:,} B | {trunc(e['overhead_vs_payload'] * 100, 2)}% | |"
        )
    inf = report.get("inference")
    if inf:
        for batch in (1, 32):
            b = inf[f"batch_{batch}"]
            lines.append(
                f"| inference per image, batch {batch}: ONNX fp32 vs Keras tf.function | "
                f"{b['onnx_fp32_s_per_image'] * 1e3:.3f} ms vs "
                f"{b['keras_tf_function_s_per_image'] * 1e3:.3f} ms | "
                f"{trunc(b['onnx_vs_tf_function'], 3)}x | {'<= 0.2x' if batch == 1 else ''} |"
            )
            lines.append(
                f"| inference per image, batch {batch}: ONNX fp32 vs Keras model.predict | "
                f"{b['onnx_fp32_s_per_image'] * 1e3:.3f} ms vs "
                f"{b['keras_predict_s_per_image'] * 1e3:.3f} ms | "
                f"{trunc(b['onnx_vs_predict'], 3)}x | |"
            )
            lines.append(
                f"| inference per image, batch {batch}: ONNX fp32, PrivaDx's graph vs tf2onnx's | "
                f"{b['onnx_fp32_s_per_image'] * 1e3:.3f} ms vs "
                f"{b['onnx_fp32_tf2onnx_s_per_image'] * 1e3:.3f} ms | "
                f"{trunc(b['direct_vs_tf2onnx'], 3)}x | |"
            )
            lines.append(
                f"| inference per image, batch {batch}: ONNX int8 vs fp32 | "
                f"{b['onnx_int8_s_per_image'] * 1e3:.3f} ms vs "
                f"{b['onnx_fp32_s_per_image'] * 1e3:.3f} ms | {trunc(b['int8_vs_fp32'], 3)}x | |"
            )
        lines.append(
            f"| model file, int8 vs fp32 | {inf['int8_bytes']:,} B vs {inf['fp32_bytes']:,} B | "
            f"{trunc(inf['int8_bytes'] / inf['fp32_bytes'], 3)}x | |"
        )
    cs = report.get("cold_start")
    if cs:
        lines.append(
            f"| cold start, one image: privadx diagnose vs TensorFlow script (median of 5) | "
            f"{trunc(cs['privadx_diagnose_s'], 3)} s vs {trunc(cs['tensorflow_script_s'], 3)} s | "
            f"{trunc(cs['ratio'], 3)}x | <= 0.25x |"
        )
    for row in report.get("round_overhead", []):
        share = statistics.mean(r["overhead_share"] for r in row["rounds"])
        wall = statistics.mean(r["wall_s"] for r in row["rounds"])
        worst = max(r["overhead_share"] for r in row["rounds"])
        lines.append(
            f"| round overhead over Mosquitto, {row['agents']} agents (rounds 2-"
            f"{ROUNDS_TIMED + 1}, training serialized in one process) | {trunc(wall, 2)} s per "
            f"round, {trunc(statistics.mean(r['overhead_s'] for r in row['rounds']), 2)} s not "
            f"training; worst round {trunc(worst * 100, 1)}% | {trunc(share * 100, 1)}% | "
            f"{'<= 10%' if row['agents'] == 10 else ''} |"
        )
    peer = report.get("flower")
    if peer:
        f, p = peer["flower"], peer["privadx"]
        lines.append(
            f"| wall time per round vs Flower {f['flwr']} (same model, split, local training; "
            f"10 sites, {FLOWER_ROUNDS} rounds, {FLOWER_RUNS} runs each, alternating) | "
            f"{trunc(statistics.mean(p['round_seconds']), 2)} s vs "
            f"{trunc(statistics.mean(f['round_seconds']), 2)} s (per run "
            + ", ".join(
                f"{trunc(statistics.mean(a['round_seconds']), 2)} vs "
                f"{trunc(statistics.mean(b['round_seconds']), 2)}"
                for a, b in zip(p.get("runs", [p]), f.get("runs", [f]), strict=True)
            )
            + f"); final accuracy "
            f"{trunc(p['accuracy'], 4)} vs {trunc(f['accuracy'], 4)}, AUC {trunc(p['auc'], 4)} "
            f"vs {trunc(f['auc'], 4)} | {trunc(peer['round_time_ratio'], 3)}x | <= 1x |"
        )
    enc = report.get("encoding_accuracy")
    if enc:
        for name in ("float16", "int8"):
            e = enc[name]
            seeds = ", ".join(f"{p:+.2f}" for p in e["accuracy_points_per_seed"])
            lines.append(
                f"| {name} updates vs float32: final accuracy / AUC (PneumoniaMNIST, 10 agents, "
                f"5 rounds, mean of {len(e['runs'])} seeds) | {trunc(e['accuracy'], 4)} / "
                f"{trunc(e['auc'], 4)} vs {trunc(enc['float32']['accuracy'], 4)} / "
                f"{trunc(enc['float32']['auc'], 4)} (per seed: {seeds} points) | "
                f"{e['accuracy_points_vs_float32']:+.2f} points, "
                f"{trunc(e['bytes_vs_float32'], 4)}x bytes | "
                f"{'< 0.5 point, <= 0.51x' if name == 'float16' else ''} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "aggregation" in args.only:
            report["aggregation"] = aggregation(args.updates)
        if "encodings" in args.only:
            report["encodings"] = encodings(args.dataset)
        if "inference" in args.only:
            report["inference"] = inference(args.dataset, work)
        if "cold_start" in args.only:
            report["cold_start"] = cold_start(args.dataset, work)
        if "round_overhead" in args.only:
            report["round_overhead"] = round_overhead(args.dataset, work)
        if "flower" in args.only:
            report["flower"] = flower(args.dataset, work)
        if "encoding_accuracy" in args.only:
            report["encoding_accuracy"] = encoding_accuracy(args.dataset, work)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    (args.out / "bench.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
