from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from privadx.common.data.catalog import CATALOG, dataset_info
from privadx.common.data.checksum import file_md5
from privadx.common.data.medmnist import catalog_entry_for, load_npz, resolve_dataset
from privadx.common.errors import DataError, InputError


def test_official_files_match_catalog_md5(medmnist_dir: Path) -> None:
    for name in ("pneumoniamnist", "breastmnist"):
        assert file_md5(medmnist_dir / f"{name}.npz") == CATALOG[name].md5[28]


def test_load_real_pneumonia_splits(pneumonia_npz: Path) -> None:
    ds = load_npz(pneumonia_npz)
    info = dataset_info("pneumoniamnist")
    assert (len(ds.train), len(ds.val), len(ds.test)) == (info.n_train, info.n_val, info.n_test)
    assert ds.image_shape == (28, 28, 1)
    assert ds.train.images.dtype == np.uint8 and ds.train.labels.dtype == np.int64
    assert ds.class_names == ("normal", "pneumonia")
    assert ds.train.class_counts() == [1214, 3494]


def test_md5_mismatch_is_refused(data_copy: Path) -> None:
    raw = bytearray(data_copy.read_bytes())
    raw[-100] ^= 0xFF  # one flipped byte inside the archive
    data_copy.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="does not match the official"):
        load_npz(data_copy)


def test_truncated_npz_is_a_data_error(tmp_path: Path, breast_npz: Path) -> None:
    broken = tmp_path / "custom.npz"
    broken.write_bytes(breast_npz.read_bytes()[:5000])
    with pytest.raises(DataError, match="unreadable"):
        load_npz(broken)


def test_npz_missing_arrays_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "partial.npz"
    np.savez(path, train_images=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataError, match="missing arrays"):
        load_npz(path)


def test_pickled_object_arrays_are_not_loaded(tmp_path: Path) -> None:
    path = tmp_path / "evil.npz"
    arrays = {
        f"{s}_{k}": np.zeros((2, 28, 28), np.uint8)
        for s in ("train", "val", "test")
        for k in ("images",)
    }
    arrays.update(
        {
            f"{s}_labels": np.array([{"x": 1}, {"y": 2}], dtype=object)
            for s in ("train", "val", "test")
        }
    )
    np.savez(path, **arrays)
    with pytest.raises(DataError):
        load_npz(path)


def test_custom_rgb_multiclass_npz(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 30), ("val", 6), ("test", 9)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 4).reshape(-1, 1).astype(np.uint8)
    path = tmp_path / "mine.npz"
    np.savez(path, **arrays)
    ds = load_npz(path)
    assert ds.image_shape == (28, 28, 3)
    assert ds.class_names == ("class_0", "class_1", "class_2", "class_3")


def test_catalog_entry_from_official_names() -> None:
    assert catalog_entry_for(Path("x/pathmnist_64.npz")) == (CATALOG["pathmnist"], 64)
    assert catalog_entry_for(Path("x/mine.npz")) is None
    assert CATALOG["pathmnist"].channels == 3 and CATALOG["pathmnist"].num_classes == 9


def test_unknown_dataset_name_lists_known_ones() -> None:
    with pytest.raises(InputError, match="pneumoniamnist"):
        dataset_info("pneumonia")


def test_resolve_without_fetch_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="privadx data fetch breastmnist"):
        resolve_dataset("breastmnist", tmp_path, fetch=False)


def test_resolve_finds_file_in_data_dir(data_copy: Path) -> None:
    assert resolve_dataset("BreastMNIST", data_copy.parent) == data_copy


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "notzip.npz"
    path.write_bytes(b"hello")
    with pytest.raises(DataError):
        load_npz(path)
    assert not zipfile.is_zipfile(path)


def test_resolve_keeps_existing_folders_and_reports_missing_paths(tmp_path: Path) -> None:
    assert resolve_dataset(str(tmp_path)) == tmp_path
    with pytest.raises(DataError, match="no such dataset"):
        resolve_dataset(str(tmp_path / "missing.npz"))
    with pytest.raises(DataError, match="no such dataset"):
        resolve_dataset(str(tmp_path / "site" / "images"))
