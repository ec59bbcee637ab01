"""What a device is told when a role's dependency cannot exist on its Python or machine."""

from __future__ import annotations

import pytest

from privadx.common.deps import require, unsupported_reason
from privadx.common.errors import DependencyError


@pytest.mark.parametrize("version", [(3, 12), (3, 13)])
def test_training_on_a_python_without_tensorflow_2_14_is_refused_in_one_sentence(
    version: tuple[int, int],
) -> None:
    reason = unsupported_reason("tensorflow", version, "linux aarch64")
    assert reason is not None and f"this is Python {version[0]}.{version[1]}" in reason
    assert "3.10 or 3.11" in reason and "\n" not in reason


@pytest.mark.parametrize("version", [(3, 10), (3, 11)])
def test_training_pythons_are_not_refused(version: tuple[int, int]) -> None:
    assert unsupported_reason("tensorflow", version, "linux aarch64") is None


def test_the_server_role_is_refused_off_its_platform() -> None:
    for top in ("tensorflow_federated", "tf2onnx", "onnx"):
        assert unsupported_reason(top, (3, 11), "linux x86_64") is None
        reason = unsupported_reason(top, (3, 11), "linux aarch64")
        assert reason is not None and "Linux x86-64 only" in reason and "aarch64" in reason
        assert unsupported_reason(top, (3, 12), "linux x86_64") is not None
    assert unsupported_reason("matplotlib", (3, 13), "linux aarch64") is None


def test_a_missing_package_names_the_extra() -> None:
    with pytest.raises(DependencyError, match=r"pip install 'privadx\[server\]'"):
        require("privadx_no_such_package")
