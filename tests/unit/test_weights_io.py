from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from privadx.common.errors import ModelError
from privadx.common.weights_io import load_weights, save_weights


def test_roundtrip_keeps_order_values_and_meta(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    weights = {
        "z/kernel": rng.random((3, 3)).astype(np.float32),
        "a/bias": rng.random(3).astype(np.float32),
    }
    save_weights(tmp_path / "w.npz", weights, {"class_names": ["a", "b"]})
    loaded, meta = load_weights(tmp_path / "w.npz")
    assert list(loaded) == ["z/kernel", "a/bias"]
    assert all(np.array_equal(loaded[k], weights[k]) for k in weights)
    assert meta["class_names"] == ["a", "b"]


def test_foreign_npz_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", a=np.zeros(3))
    with pytest.raises(ModelError, match="not a PrivaDx weights file"):
        load_weights(tmp_path / "x.npz")


def test_non_finite_weights_are_refused(tmp_path: Path) -> None:
    save_weights(tmp_path / "w.npz", {"k": np.array([1.0, np.nan], np.float32)}, {})
    with pytest.raises(ModelError, match="not finite"):
        load_weights(tmp_path / "w.npz")


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    save_weights(tmp_path / "w.npz", {"k": np.zeros(1000, np.float32)}, {})
    data = (tmp_path / "w.npz").read_bytes()
    (tmp_path / "w.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="unreadable"):
        load_weights(tmp_path / "w.npz")


def test_object_arrays_are_never_unpickled(tmp_path: Path) -> None:
    save_weights(tmp_path / "w.npz", {"k": np.zeros(2, np.float32)}, {})
    np.savez(
        tmp_path / "evil.npz",
        **{"w/k": np.array([object()], dtype=object), "__privadx_meta__": np.zeros(1, np.uint8)},
    )
    with pytest.raises(ModelError):
        load_weights(tmp_path / "evil.npz")


def test_the_checkpoint_and_weights_files_share_one_container(tmp_path: Path) -> None:
    """Both are :mod:`privadx.common.npz_file` files: what one writes the other's reader
    opens, with only the metadata entry's name told apart."""
    from privadx.common.npz_file import MissingMetadataError, NpzFileError, load_npz_file

    save_weights(tmp_path / "w.npz", {"k": np.arange(3, dtype=np.float32)}, {"x": 1})
    arrays, meta = load_npz_file(tmp_path / "w.npz", meta_key="__privadx_meta__")
    assert list(arrays) == ["w/k"] and meta["x"] == 1 and meta["order"] == ["k"]
    with pytest.raises(MissingMetadataError, match="no metadata entry"):
        load_npz_file(tmp_path / "w.npz", meta_key="__meta__")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(NpzFileError, match=r"bad\.npz: unreadable"):
        load_npz_file(tmp_path / "bad.npz", meta_key="__meta__")
