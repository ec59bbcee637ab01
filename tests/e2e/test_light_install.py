"""The light install (diagnosis and the edge agent's MQTT side) on every other CPython 3.10-3.13
this machine has: the wheel is built once, installed into a fresh virtual environment per
interpreter from the package registry, and run outside the repository.

Each interpreter found is named in the test's id and output; one that is absent is skipped
with the places looked in. The main environment (3.11, numpy 1.x) is the reference; the
others get whatever numpy, Pillow and ONNX Runtime the registry offers them (numpy 2.x).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from tests.conftest import REPO, run_cli

OTHER_PYTHONS = [(3, 10), (3, 12), (3, 13)]


def _find_python(version: tuple[int, int]) -> tuple[Path | None, list[str]]:
    """A working interpreter of ``version`` under pyenv or on PATH, and where it looked.

    A pyenv shim is on PATH for every version but only runs the selected ones, so each
    candidate is run once before it is used.
    """
    name = f"python{version[0]}.{version[1]}"
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    candidates = [
        c / "bin" / name for c in sorted(root.glob(f"versions/{version[0]}.{version[1]}.*"))
    ]
    on_path = shutil.which(name)
    candidates += [Path(on_path)] if on_path else []
    for exe in candidates:
        if not exe.exists():
            continue
        ok = subprocess.run([str(exe), "-c", "import sys"], capture_output=True, check=False)
        if ok.returncode == 0:
            return exe, []
    return None, [f"{root}/versions", "PATH"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv (which builds the wheel and the environments) is not on PATH")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([uv, "build", "--wheel", "--out-dir", str(out), "-q"], cwd=REPO, check=True)
    (built,) = out.glob("privadx-*.whl")
    return built


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory, breast_npz: Path) -> list[Path]:
    folder = tmp_path_factory.mktemp("images")
    test = np.load(breast_npz)["test_images"]
    paths = []
    for i in range(8):
        paths.append(folder / f"case-{i}.png")
        Image.fromarray(test[i]).save(paths[-1])
    paths.append(folder / "ct.dcm")
    shutil.copyfile(get_testdata_file("CT_small.dcm", download=False), paths[-1])
    return paths


@pytest.fixture(scope="module")
def reference(sim_run: Path, images: list[Path]) -> dict[str, object]:
    """The main environment's diagnosis of the images."""
    args = ["diagnose", str(sim_run / "model.onnx"), *map(str, images), "--allow-unsigned"]
    proc = run_cli(*args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.slow
@pytest.mark.parametrize("version", OTHER_PYTHONS, ids=lambda v: f"cpython-{v[0]}.{v[1]}")
def test_the_light_install_diagnoses_the_same_on_another_python(
    version: tuple[int, int],
    wheel: Path,
    sim_run: Path,
    images: list[Path],
    reference: dict[str, object],
    tmp_path: Path,
) -> None:
    python, looked = _find_python(version)
    if python is None:
        pytest.skip(f"no CPython {version[0]}.{version[1]} on this machine (looked in {looked})")
    uv = shutil.which("uv")
    assert uv is not None
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "-q", "--python", str(python), str(venv)], check=True)
    bin_ = venv / "bin"
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(bin_ / "python"), str(wheel)], check=True
    )
    # Outside the repository and without PYTHONPATH: only the installed package is importable.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    probe = subprocess.run(
        [str(bin_ / "python"), "-c", _PROBE], capture_output=True, text=True, env=env,
        cwd=tmp_path, check=False,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    facts = json.loads(probe.stdout)
    print(f"{python}: Python {facts['python']}, numpy {facts['numpy']}, "
          f"onnxruntime {facts['onnxruntime']}")  # fmt: skip
    assert facts["python"].startswith(f"{version[0]}.{version[1]}.")
    assert facts["heavy"] == []  # the edge agent's MQTT path imported without TensorFlow
    assert facts["bad_site_refused"]

    args = ["diagnose", str(sim_run / "model.onnx"), *map(str, images), "--allow-unsigned"]
    # Heat maps and the HTML report need no TensorFlow either (none is installed here).
    explain = ["--heatmaps", str(tmp_path / "maps"), "--report", str(tmp_path / "report.html")]
    proc = subprocess.run(
        [str(bin_ / "privadx"), *args, *explain, "--json"], capture_output=True, text=True,
        env=env, cwd=tmp_path, check=False, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["failed"] == 0 and len(got["results"]) == len(images)
    assert all(Path(r["heatmap"]).read_bytes()[:4] == b"\x89PNG" for r in got["results"])
    assert (tmp_path / "report.html").read_text().count('<tr class="result') == len(images)
    for mine, theirs in zip(got["results"], reference["results"], strict=True):  # type: ignore[call-overload]
        assert mine["prediction"] == theirs["prediction"], mine["source"]
        assert mine["unusual"] == theirs["unusual"], mine["source"]
        assert mine["ood_distance"] == pytest.approx(theirs["ood_distance"], rel=1e-5, abs=1e-4)
        assert set(mine.get("probabilities", {})) == set(theirs.get("probabilities", {}))
        for name, p in mine.get("probabilities", {}).items():
            assert p == pytest.approx(theirs["probabilities"][name], abs=1e-5)

    # The agent needs TensorFlow to train: without it, one sentence and exit 6 at start.
    edge = subprocess.run(
        [str(bin_ / "privadx"), "edge", "--broker", "mqtt://127.0.0.1:1", "--insecure",
         "--allow-unsigned", "--site-id", "site-0", "--data", str(images[0].parent),
         "--model-dir", str(tmp_path / "models")],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False, timeout=120,
    )  # fmt: skip
    assert edge.returncode == 6, edge.stderr
    assert "Traceback" not in edge.stderr and "tensorflow" in edge.stderr.lower()
    if version >= (3, 12):
        assert f"this is Python {version[0]}.{version[1]}" in edge.stderr


_PROBE = """
import json, sys
import numpy, onnxruntime
import privadx.common.mqtt_link, edge.agent, edge.config, edge.diagnose, edge.store
from privadx.common.errors import InputError
from privadx.common.wire.topics import check_site_id
check_site_id("site-0")
try:
    check_site_id("..")
    refused = False
except InputError:
    refused = True
heavy = [m for m in ("tensorflow", "keras", "tensorflow_federated", "jax") if m in sys.modules]
print(json.dumps({"python": sys.version.split()[0], "numpy": numpy.__version__,
                  "onnxruntime": onnxruntime.__version__, "heavy": heavy,
                  "bad_site_refused": refused}))
"""


def test_the_wheel_installs_no_generic_shared_package(wheel: Path) -> None:
    import zipfile

    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert "common" not in tops and "harness" not in tops and "tests" not in tops
    assert {"privadx", "edge", "gateway", "models", "tff_core"} <= tops
