"""The benchmark suite's Markdown table and its reading, from the report dictionary."""

from __future__ import annotations

import statistics
from typing import Any

from harness.bench.federations import ROUNDS_TIMED
from harness.bench.timing import trunc


def markdown(report: dict[str, Any]) -> str:
    """The table of every section in ``report``, then what it says against its targets."""
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
