"""The diagnosis path and the shared package must never import TensorFlow or TFF."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

HEAVY = ("tensorflow", "tensorflow_federated", "tf2onnx", "keras", "jax")


def _loaded_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True
    )
    return [m for m in out.stdout.strip().split(",") if m]


def test_cli_and_diagnosis_modules_import_nothing_heavy() -> None:
    code = (
        "import privadx.cli, edge.diagnose, edge.onnx_model, edge.heatmap\n"
        "import edge.explain, edge.provenance, edge.report\n"
        "import privadx.common.data.local\n"
        "import privadx.common.data.medmnist, privadx.common.data.download\n"
        "import privadx.common.metrics, privadx.common.weights_io\n"
        "import tff_core.config, models.spec, models.settings, privadx.common.trust.federation\n"
        "from privadx.cli import build_parser\nbuild_parser()"
    )
    assert _loaded_after(code) == []


def test_help_of_every_subcommand_imports_nothing_heavy() -> None:
    code = (
        "import contextlib, io\nfrom privadx.cli import main\n"
        "for cmd in ('data', 'simulate', 'export', 'diagnose'):\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        main([cmd, '--help'])"
    )
    assert _loaded_after(code) == []
