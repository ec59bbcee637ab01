"""Choosing ONNX Runtime's execution provider."""

from __future__ import annotations

import pytest

from privadx.common.errors import InputError
from privadx.common.onnx_session import execution_providers


def test_the_cpu_is_the_default_and_stays_behind_an_accelerator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import onnxruntime as ort

    assert execution_providers("cpu") == ["CPUExecutionProvider"]
    assert execution_providers("CPUExecutionProvider") == ["CPUExecutionProvider"]
    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    assert execution_providers("cuda") == ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_an_unavailable_provider_lists_the_available_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(InputError, match=r"'cuda' is not available.*cpu \(CPUExecutionProvider\)"):
        execution_providers("cuda")
