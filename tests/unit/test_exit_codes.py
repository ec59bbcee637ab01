"""Exit codes live in one enum; every error, the CLI's help and the docs use it."""

from __future__ import annotations

import importlib
import pkgutil

import edge
import gateway
import privadx
from privadx.cli import build_parser
from privadx.common.errors import ExitCode, PrivadxError, exit_code_lines
from tests.conftest import REPO


def _error_classes() -> set[type[PrivadxError]]:
    for package in (edge, gateway, privadx):
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if not info.name.endswith("__main__"):
                importlib.import_module(info.name)
    found: set[type[PrivadxError]] = set()
    todo = [PrivadxError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo += cls.__subclasses__()
    return found


def test_every_error_exits_with_a_listed_code() -> None:
    classes = _error_classes()
    assert len(classes) >= 10  # the walk found the errors of every package
    for cls in classes:
        assert isinstance(cls.exit_code, ExitCode), cls
    used = {cls.exit_code for cls in classes}
    assert {ExitCode.BROKER, ExitCode.QUORUM, ExitCode.TRUST, ExitCode.SECURE_AGGREGATION} <= used


def test_the_help_and_the_operations_doc_list_every_code() -> None:
    epilog = " ".join((build_parser().epilog or "").split())
    docs = (REPO / "docs" / "operations.md").read_text()
    for code in ExitCode:
        assert f"{int(code)} {code.meaning}" in epilog, code
        assert f"| {int(code)} | {code.meaning} |" in docs, code
    assert exit_code_lines().count(";") == len(ExitCode) - 1
