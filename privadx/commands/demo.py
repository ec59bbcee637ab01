"""``privadx demo``: a whole federation on one machine, as separate processes."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.settings import DEFAULT_TRAINING, site_name
from privadx.commands._common import add_data_dir, non_negative_int, positive_float, positive_int
from privadx.common.errors import InputError

if TYPE_CHECKING:
    from privadx.common.trust.federation import FederationPki

log = logging.getLogger(__name__)

HELP = "run broker, gateway and N edge agents as processes on real data, then diagnose"
DESCRIPTION = """\
One command for the whole system: split a real MedMNIST dataset across N sites (Dirichlet
label skew), write the task file (RUN_DIR/task.toml), start an MQTT broker (embedded unless
--broker is given), the gateway and one edge agent per site as separate processes, train for
R rounds, export the ONNX model, run `privadx diagnose` at one site on a few test images,
and print a summary. The gateway holds no site image: it learns the task from the task file
and the model's quality from the sites' evaluation reports on their held-out images
(federated evaluation); it also scores the dataset's public test split, reported apart.
RUN_DIR gets the gateway's run folder files plus summary.json with bytes sent and received
per site, the sites' model folders and logs.

Every participant gets an identity from a fresh federation CA (RUN_DIR/pki, as from
`privadx certs init`; or --pki to reuse one): the gateway signs every model and the sites
sign their updates, and the site's diagnosis checks the model's signature. The embedded
broker listens on loopback without TLS; a --broker given as mqtt:// needs --insecure, one
given as mqtts:// must trust the CA in the PKI folder (e.g. run its broker/mosquitto.conf).
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``demo``."""
    p = sub.add_parser(
        "demo",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dataset", default="pneumoniamnist", help="MedMNIST name or .npz")
    add_data_dir(p)
    p.add_argument("--sites", type=positive_int, default=5)
    p.add_argument("--rounds", type=positive_int, default=5)
    p.add_argument("--local-epochs", type=positive_int, default=2)
    p.add_argument(
        "--min-local-steps",
        type=non_negative_int,
        default=DEFAULT_TRAINING.min_local_steps,
        help="fewest optimizer steps a site makes in a round (default: %(default)s)",
    )
    p.add_argument("--alpha", type=positive_float, default=0.5, help="Dirichlet concentration")
    p.add_argument("--broker", default=None, help="use this broker instead of an embedded one")
    p.add_argument("--mqtt-version", choices=("5", "3.1.1"), default=None)
    p.add_argument(
        "--insecure", action="store_true", help="allow a plain mqtt:// --broker (not loopback)"
    )
    p.add_argument(
        "--pki",
        type=Path,
        default=None,
        help="federation folder from `privadx certs init` (default: create RUN_DIR/pki)",
    )
    p.add_argument("--round-timeout", type=positive_float, default=600.0)
    p.add_argument(
        "--update-encoding",
        choices=("float32", "float16", "int8"),
        default="float32",
        help="how sites send updates (see privadx gateway --help)",
    )
    p.add_argument(
        "--secure-aggregation",
        action="store_true",
        help="sum the sites' updates by secure aggregation (the gateway sees only the sum)",
    )
    p.add_argument(
        "--low-memory",
        action="store_true",
        help="edge agents train in a child process each round (see privadx edge --help)",
    )
    p.add_argument(
        "--edge-python",
        type=Path,
        action="append",
        metavar="PYTHON",
        help="run the sites' agents with this interpreter (an install of privadx[train], as "
        "a device has); repeat to give sites different ones, used in turn (default: this one)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--out", type=Path, required=True, help="run folder to write")
    p.set_defaults(subparser=p, run=run)


def write_site_data(args: argparse.Namespace, sites_dir: Path) -> list[Path]:
    """Partition the training split and write one ``.npz`` per site (the site's own images)."""
    from privadx.common.data.local import save_site_npz
    from privadx.common.data.medmnist import load_npz, resolve_dataset
    from privadx.common.data.partition import PartitionSpec, partition

    dataset = load_npz(resolve_dataset(args.dataset, args.data_dir))
    parts = partition(
        dataset.train.labels, PartitionSpec(sites=args.sites, alpha=args.alpha, seed=args.seed)
    )
    sites_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, idx in enumerate(parts):
        path = sites_dir / f"{site_name(i)}.npz"
        save_site_npz(path, dataset.train.subset(idx))
        paths.append(path)
    log.info(
        "split %d %s training images across %d sites: %s",
        len(dataset.train),
        dataset.name,
        args.sites,
        [len(p) for p in parts],
    )
    return paths


def _cli(*args: str, python: Path | None = None) -> list[str]:
    return [str(python or sys.executable), "-m", "privadx", *args]


def run(args: argparse.Namespace) -> int:
    """Run the demo and print its summary."""
    from gateway.broker import EMBEDDED_VERSION, EmbeddedBroker

    for python in args.edge_python or []:
        if not (python.is_file() and os.access(python, os.X_OK)):
            raise InputError(f"--edge-python {python}: not an executable file")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    site_files = write_site_data(args, out / "site-data")
    task = _write_task(args, out / "task.toml")
    pki = _federation_pki(args, out)
    with contextlib.ExitStack() as stack:
        if args.broker:
            broker_url, version = args.broker, args.mqtt_version or "5"
            transport = ["--insecure"] if args.insecure else []
        else:
            broker = stack.enter_context(EmbeddedBroker())
            broker_url, version = str(broker.address), args.mqtt_version or EMBEDDED_VERSION.value
            transport = ["--insecure"]  # the embedded broker listens on loopback only
        started = time.monotonic()
        link = _link(broker_url, version, transport)
        edges = [
            _start_edge(
                args, out, i, path, [*link, "--identity", str(pki.site(site_name(i)))], stack
            )
            for i, path in enumerate(site_files)
        ]
        gateway = subprocess.run(
            _cli(
                "gateway",
                *_link(broker_url, version, transport),
                "--identity",
                str(pki.gateway),
                "--task",
                str(task),
                "--eval-data",
                args.dataset,
                *(["--data-dir", str(args.data_dir)] if args.data_dir else []),
                "--rounds",
                str(args.rounds),
                "--min-sites",
                str(args.sites),
                "--local-epochs",
                str(args.local_epochs),
                "--min-local-steps",
                str(args.min_local_steps),
                "--round-timeout",
                str(args.round_timeout),
                "--update-encoding",
                args.update_encoding,
                *(["--secure-aggregation"] if args.secure_aggregation else []),
                "--seed",
                str(args.seed),
                "--out",
                str(out),
                "--json",
            ),
            stdout=subprocess.PIPE,
            text=True,
            check=False,
        )
        if gateway.returncode != 0:
            log.error("the gateway failed (exit %d); see the messages above", gateway.returncode)
            return gateway.returncode
        for proc in edges:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=120)
        seconds = time.monotonic() - started
    summary = _summary(json.loads(gateway.stdout), out, args.sites, seconds)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    diagnosis = _diagnose_at_site(args, out)
    _print(summary, diagnosis, args.json)
    return 0


def _write_task(args: argparse.Namespace, path: Path) -> Path:
    """The task file the gateway runs from (from the dataset's metadata, no pixels)."""
    from privadx.common.data.medmnist import resolve_dataset
    from privadx.common.task import task_from_dataset

    task_from_dataset(str(resolve_dataset(args.dataset, args.data_dir))).save(path)
    return path


def _federation_pki(args: argparse.Namespace, out: Path) -> FederationPki:
    """The PKI to use: --pki, or RUN_DIR/pki (created with identities for every site)."""
    from privadx.common.trust.federation import FederationPki, init_federation, issue_sites

    names = [site_name(i) for i in range(args.sites)]
    root = args.pki or out / "pki"
    if not (root / "ca" / "ca.key").exists():
        return init_federation(
            root, federation="default", hosts=["localhost"], port=8883, sites=names
        )
    pki = FederationPki(root.resolve())
    missing = [n for n in names if not pki.site(n).exists()]
    if missing:
        issue_sites(pki.root, missing)
    return pki


def _link(broker: str, version: str, transport: list[str]) -> list[str]:
    return ["--broker", broker, "--mqtt-version", version, *transport]


def _start_edge(
    args: argparse.Namespace,
    out: Path,
    i: int,
    data: Path,
    link: list[str],
    stack: contextlib.ExitStack,
) -> subprocess.Popen[bytes]:
    (out / "logs").mkdir(exist_ok=True)
    log_file = stack.enter_context((out / "logs" / f"site-{i}.log").open("wb"))
    proc = subprocess.Popen(
        _cli(
            "edge",
            *link,
            "--site-id",
            site_name(i),
            "--data",
            str(data),
            "--model-dir",
            str(out / "sites" / site_name(i)),
            "--once",
            *(["--low-memory"] if args.low_memory else []),
            python=args.edge_python[i % len(args.edge_python)] if args.edge_python else None,
        ),
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    stack.callback(_stop, proc)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _summary(gateway: dict[str, Any], out: Path, sites: int, seconds: float) -> dict[str, Any]:
    per_site = {}
    for i in range(sites):
        state_file = out / "sites" / site_name(i) / "state.json"
        state = json.loads(state_file.read_text()) if state_file.exists() else {}
        per_site[site_name(i)] = {
            "bytes_sent": state.get("bytes_sent"),
            "bytes_received": state.get("bytes_received"),
        }
    rounds = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line]
    return {
        **gateway,
        "demo_seconds": round(seconds, 1),
        "bytes_per_site": per_site,
        "per_round": [
            {
                "round": r["round"],
                "federated_auc": (r.get("federated") or {}).get("auc"),
                "sites_reported": len((r.get("evaluation") or {}).get("sites_reported", [])),
                "benchmark_auc": (r.get("test") or {}).get("auc"),
                "benchmark_accuracy": (r.get("test") or {}).get("accuracy"),
                "updates": r["updates"],
                "seconds": r["seconds"],
            }
            for r in rounds
        ],
    }


def _diagnose_at_site(args: argparse.Namespace, out: Path) -> str:
    from PIL import Image

    from privadx.common.data.medmnist import load_npz, resolve_dataset

    test = load_npz(resolve_dataset(args.dataset, args.data_dir)).test
    folder = out / "site-0-images"
    folder.mkdir(exist_ok=True)
    for i in range(6):
        image = test.images[i]
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
            folder / f"image-{i}.png"
        )
    model = out / "sites" / "site-0" / "model.onnx"
    result = subprocess.run(
        _cli("diagnose", str(model), str(folder)), capture_output=True, text=True, check=False
    )
    truth = ", ".join(f"image-{i}: {test.class_names[test.labels[i]]}" for i in range(6))
    return f"{result.stdout}(true labels: {truth})"


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "n/a"


def _print(summary: dict[str, Any], diagnosis: str, as_json: bool) -> None:
    if as_json:
        json.dump(summary, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
        return
    print(
        f"federated run over MQTT: {len(summary['bytes_per_site'])} sites, "
        f"{summary['rounds']} rounds, {summary['demo_seconds']:.0f} s"
    )
    for r in summary["per_round"]:
        print(
            f"  round {r['round']}: {r['updates']} updates, federated AUC "
            f"{_num(r['federated_auc'])} ({r['sites_reported']} sites reported), public test "
            f"AUC {_num(r['benchmark_auc'])} ({r['seconds']:.1f} s)"
        )
    for site, b in summary["bytes_per_site"].items():
        print(f"  {site}: sent {b['bytes_sent']} bytes, received {b['bytes_received']} bytes")
    fed = summary.get("federated") or {}
    if fed:
        lo, hi = fed.get("auc_ci") or (None, None)
        print(
            f"final, federated evaluation on the sites' {fed['examples']} held-out images: AUC "
            f"{_num(fed['auc'])} (95% CI {_num(lo)}-{_num(hi)}), sensitivity "
            f"{_num(fed['sensitivity'])}, specificity {_num(fed['specificity'])} at threshold "
            f"{_num(fed['threshold'])}; ECE {_num(fed['ece'])} -> {_num(fed['ece_calibrated'])} "
            f"at temperature {_num(fed['temperature'])}"
        )
    for site, m in summary.get("sites", {}).items():
        print(
            f"  {site}: {m['examples']} held-out images, AUC {_num(m['auc'])}, sensitivity "
            f"{_num(m['sensitivity'])}, specificity {_num(m['specificity'])}, own threshold "
            f"{_num(m['own_threshold'])}"
        )
    print(
        f"final, public test split (benchmark, held by the coordinating centre): AUC "
        f"{_num(summary['auc'])}, accuracy {_num(summary['accuracy'])}, sensitivity "
        f"{_num(summary['sensitivity'])}, specificity {_num(summary['specificity'])}"
    )
    print("diagnosis at site-0 with its model.onnx:")
    print(diagnosis)
