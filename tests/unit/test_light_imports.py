"""The diagnosis path and the shared package must never import TensorFlow or TFF."""

from __future__ import annotations

import ast
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


NEWER_THAN_310 = {
    "enum": {"StrEnum", "ReprEnum", "verify", "EnumCheck"},
    "typing": {"Self", "LiteralString", "Never", "assert_never", "reveal_type", "Required"},
    "datetime": {"UTC"},
    "asyncio": {"TaskGroup", "timeout"},
}
"""Standard-library names that appeared in 3.11; ``tomllib`` is a whole module of them."""

LIGHT_PACKAGES = ("privadx", "edge", "models")
"""Packages the light install runs on a device's Python (3.10 and newer)."""


def test_light_packages_take_311_names_from_the_compat_module() -> None:
    """The edge and diagnosis paths run on 3.10: a 3.11-only name must come via compat.

    The light-install test checks this on a real 3.10 when the machine has one; this check
    holds everywhere and names the line.
    """
    offenders = []
    for package in LIGHT_PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if path.name == "compat.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', 0)}"
                if isinstance(node, ast.ImportFrom) and node.module in NEWER_THAN_310:
                    names = {a.name for a in node.names} & NEWER_THAN_310[node.module]
                    offenders += [f"{where} imports {n} from {node.module}" for n in names]
                elif isinstance(node, ast.Import):
                    offenders += [
                        f"{where} imports tomllib" for a in node.names if a.name == "tomllib"
                    ]
    assert offenders == [], "use privadx.common.compat instead:\n" + "\n".join(offenders)
