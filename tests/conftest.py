"""Shared fixtures: the real MedMNIST files from ../shared, slow-test switch, TFF leak check."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, NoReturn

import pytest
from hypothesis import settings

# Python's TensorFlow must train with the kernels TFF's ``worker_binary`` (which runs the
# simulation) uses, since the tests compare PrivaDx's federation against TFF's computation.
# The worker does not follow TF_ENABLE_ONEDNN_OPTS, and which of Python's kernels match its
# own depended on the CPU (AMD EPYC with AVX-512: oneDNN on, 3e-8 apart; Intel with AMX:
# off, 4.0e-7; AMD EPYC with AVX2 only: neither, 1.9e-5 off and 3.6e-5 on, one round of the
# same training). Capping oneDNN's instruction set at AVX, a variable both oneDNN builds read
# (the worker inherits the environment), made them agree to 9.9e-7 on the AVX2 machine.
# Set before any test module imports TensorFlow.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX")

# CI gets the same examples every run (a failure there is reproducible, never a fluke).
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

REPO = Path(__file__).resolve().parents[1]
MEDMNIST_DIR = Path(
    os.environ.get("PRIVADX_TEST_DATA", REPO.parent / "shared" / "data" / "medmnist")
)


def load_module(name: str, path: Path) -> Any:
    """Import the Python file ``path`` as module ``name`` (a script, an app beside the package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def load_script(name: str) -> Any:
    """``scripts/NAME.py`` as a module, for tests of a benchmark's bookkeeping."""
    return load_module(name, REPO / "scripts" / f"{name}.py")


# scripts/test.sh runs the suite on two xdist workers, each file whole on one worker, and
# hands the files out in collection order. These take longest (CI's --durations list), so they
# are collected first and the workers finish together instead of one of them running a long
# file alone at the end. The rest keep pytest's order.
LONGEST_FILES = (
    "e2e/test_crash_recovery.py",
    "integration/test_secure_aggregation.py",
    "integration/test_ten_sites.py",
    "e2e/test_cli.py",
    "e2e/test_diagnosis_report.py",
    "integration/test_federation_mqtt.py",
    "e2e/test_demo.py",
    "e2e/test_federated_evaluation.py",
    "e2e/test_rgb_multiclass_simulation.py",
    "integration/test_consecutive_runs.py",
    "e2e/test_dp_simulation.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the longest files first (a stable sort: each file's own order is kept)."""
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}

    def key(item: pytest.Item) -> int:
        return rank.get(item.path.relative_to(REPO / "tests").as_posix(), len(rank))

    items.sort(key=key)


SUMMARY_KEYS = frozenset({"accuracy", "auc", "sensitivity", "specificity", "rounds", "seconds"})
"""Keys every run's summary.json must have (simulate, gateway and demo alike)."""


# Every process this test session starts inherits this tag, TFF's workers included, so the
# leak check below sees only this session's workers (not another suite's running beside it).
SESSION_TAG = f"PRIVADX_TEST_SESSION={uuid.uuid4().hex}"
os.environ["PRIVADX_TEST_SESSION"] = SESSION_TAG.split("=", 1)[1]


def _worker_pids() -> list[int]:
    sys.path.insert(0, str(REPO))
    from tff_core.runtime import worker_pids

    tagged = []
    for pid in worker_pids():
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if SESSION_TAG.encode() in environ:
            tagged.append(pid)
    return tagged


@pytest.fixture(scope="session", autouse=True)
def no_leftover_tff_workers():
    """Fail the session if a TFF worker_binary outlives the tests (it would hang CI)."""
    before = set(_worker_pids())
    yield
    leaked = set(_worker_pids()) - before
    if leaked:
        for pid in leaked:
            subprocess.run(["kill", "-9", str(pid)], check=False)
        pytest.fail(f"TFF worker_binary processes outlived the tests: {sorted(leaked)}")


def missing(what: str) -> NoReturn:
    """A test's prerequisite is absent: skip with the reason, but fail under CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI must run every test)")
    pytest.skip(what)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A missing broker binary (raised by the harness) is a skip outside CI."""
    from harness.mosquitto import MissingPrerequisiteError

    outcome = yield
    report = outcome.get_result()
    info = call.excinfo
    if (
        info is not None
        and info.errisinstance(MissingPrerequisiteError)
        and not os.environ.get("CI")
    ):
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, f"Skipped: {info.value}")


@pytest.fixture(scope="session")
def medmnist_dir() -> Path:
    if not (MEDMNIST_DIR / "pneumoniamnist.npz").is_file():
        missing(
            f"real MedMNIST files expected in {MEDMNIST_DIR} (set PRIVADX_TEST_DATA; "
            "see docs/development.md)"
        )
    return MEDMNIST_DIR


@pytest.fixture(scope="session")
def pneumonia_npz(medmnist_dir: Path) -> Path:
    return medmnist_dir / "pneumoniamnist.npz"


@pytest.fixture(scope="session")
def breast_npz(medmnist_dir: Path) -> Path:
    return medmnist_dir / "breastmnist.npz"


@pytest.fixture
def data_copy(tmp_path: Path, breast_npz: Path) -> Path:
    """A writable copy of the real BreastMNIST file, under its official name."""
    target = tmp_path / "breastmnist.npz"
    shutil.copyfile(breast_npz, target)
    return target


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run ``privadx ARGS`` as a subprocess of this interpreter."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "privadx", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=REPO,
        check=False,
    )
