"""What one hostile site can make the gateway hold: the intake under a flood, measured.

One authenticated site sends chunks of messages it never completes (messages declaring
400 MB, then messages declaring 300 KB, each sent up to its last chunk), between the chunks
of an honest site's update, into the gateway's reassembly as configured for a run of the
PneumoniaMNIST task's model (:mod:`gateway.intake`), and, for comparison, into one with the
previous limits (one pool of 256 partial messages of up to 512 MiB shared by all senders).
Prints JSON: bytes sent, bytes held, the process's resident memory growth, and whether the
honest update completed.

Usage: ``python scripts/bench_intake.py [--megabytes 1024] [--json out.json]`` (the Markdown
table goes next to the JSON, as ``out.md``).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import logging
import resource
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from privadx.common.errors import PrivadxError
from privadx.common.wire.chunks import DEFAULT_CHUNK_SIZE, Reassembler, split
from privadx.common.wire.envelope import Envelope, Kind

OLD = {"max_payload": 512 * 1024 * 1024, "max_partial": 256, "max_sender_bytes": 1 << 62}


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _flood_chunks(megabytes: int, declared: int) -> Iterator[Envelope]:
    """Chunks of messages declaring ``declared`` bytes, each never completed.

    256 KiB each, distinct bytes, made one at a time (so only what is kept stays in memory).
    """
    per_message = max(2, -(-declared // DEFAULT_CHUNK_SIZE))
    total = megabytes * 1024 * 1024 // DEFAULT_CHUNK_SIZE
    for i in range(total):
        message, index = divmod(i, per_message - 1)
        part = i.to_bytes(8, "little") * (DEFAULT_CHUNK_SIZE // 8)
        info = {
            "index": index,
            "count": per_message,
            "sha256": hashlib.sha256(part).hexdigest(),
            "total_sha256": "0" * 64,
            "total_size": declared,
        }
        env = Envelope(
            kind=Kind.UPDATE,
            run="r",
            round=1,
            sender="site-1",
            payload=part,
            message_id=f"flood-{message}",
        )
        yield env.with_meta(chunk=info)


def _run(
    limits: dict[str, int],
    megabytes: int,
    declared: int,
    honest: list[Envelope],
    kind_limit: int | None = None,
    *,
    shared_pool: bool = False,
) -> dict[str, Any]:
    gc.collect()
    before = _rss_mb()
    r = Reassembler(**limits)
    # The previous intake kept one pool for every sender: both count as one sender there.
    attacker, honest_source = ("pool", "pool") if shared_pool else ("site-1", "site-0")
    done, refused, sent = None, 0, 0
    total = megabytes * 1024 * 1024 // DEFAULT_CHUNK_SIZE
    step = max(1, total // len(honest))
    for i, chunk in enumerate(_flood_chunks(megabytes, declared)):
        sent += len(chunk.payload)
        try:
            r.add(chunk, source=attacker, max_size=kind_limit)
        except PrivadxError:  # a refused chunk: counted
            refused += 1
        if i % step == 0 and i // step < len(honest):
            done = r.add(honest[i // step], source=honest_source) or done
    for chunk in honest[total // step :]:
        done = r.add(chunk, source=honest_source) or done
    result = {
        "attacker_bytes_sent": sent,
        "held_bytes": r.buffered_bytes,
        "reserved_by_attacker": r.reserved_by(attacker),
        "refused_chunks": refused,
        "rss_growth_mb": round(_rss_mb() - before, 1),
        "honest_update_completed": done is not None,
    }
    del r
    gc.collect()
    return result


def table(results: dict[str, Any]) -> str:
    """The Markdown table of a result."""
    mb = 1024 * 1024
    lines = [
        f"One site floods {results['flood_megabytes']} MiB of never-completed messages while "
        f"an honest {results['model_bytes']}-byte update arrives in 16 KiB chunks.",
        "",
        "| flood | intake | bytes held | memory growth | attacker chunks refused | honest "
        "update completed |",
        "|---|---|---|---|---|---|",
    ]
    for name, label in (("large_declared", "messages of 400 MB"), ("small_declared", "300 KB")):
        for key, intake in (("previous_limits", "previous"), ("per_site_budget", "per site")):
            r = results[name][key]
            lines.append(
                f"| {label} | {intake} | {r['held_bytes'] / mb:.1f} MiB | "
                f"{r['rss_growth_mb']:.1f} MB | {r['refused_chunks']} | "
                f"{'yes' if r['honest_update_completed'] else 'no'} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=1024, help="flood size (default 1024)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # evictions are logged per message: thousands

    import numpy as np

    from gateway.intake import PARTIAL_PER_SITE, MessageLimits
    from models.architectures import build_model
    from models.weights import get_weights
    from privadx.common.task import task_from_dataset
    from privadx.common.wire import tensors

    task = task_from_dataset("pneumoniamnist")
    weights = get_weights(build_model(task.model_spec(), seed=0))
    limits = MessageLimits.for_run(weights, task.num_classes)
    new = {
        "max_payload": max(limits.update, limits.secagg, limits.evaluation),
        "max_partial": PARTIAL_PER_SITE,
        "max_sender_bytes": limits.sender_bytes,
    }
    honest_env = Envelope(
        kind=Kind.UPDATE,
        run="r",
        round=1,
        sender="site-0",
        payload=tensors.to_bytes({k: np.asarray(v) for k, v in weights.items()}),
    )
    honest = split(honest_env, chunk_size=16 * 1024)  # many chunks: in flight during the flood
    results: dict[str, Any] = {"flood_megabytes": args.megabytes, "model_bytes": limits.update}
    for name, declared in (("large_declared", 400_000_000), ("small_declared", 300_000)):
        results[name] = {
            "declared_bytes_each": declared,
            "previous_limits": _run(OLD, args.megabytes, declared, honest, shared_pool=True),
            "per_site_budget": _run(new, args.megabytes, declared, honest, limits.update),
        }
    text = json.dumps(results, indent=2)
    print(text)
    print(table(results))
    if args.json:
        args.json.write_text(text + "\n")
        args.json.with_suffix(".md").write_text(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
