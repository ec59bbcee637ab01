from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from privadx.common.data.local import load_local_dataset
from privadx.common.data.medmnist import load_npz
from privadx.common.errors import DataError
from privadx.common.preprocess import PreprocessSpec

SPEC = PreprocessSpec()


@pytest.fixture
def class_folder(tmp_path: Path, breast_npz: Path) -> Path:
    """Real BreastMNIST test images saved as PNGs, one folder per class, plus odd files."""
    test = load_npz(breast_npz).test
    root = tmp_path / "site"
    for name in test.class_names:
        (root / name).mkdir(parents=True)
    for i in range(20):
        Image.fromarray(test.images[i, ..., 0]).save(
            root / test.class_names[test.labels[i]] / f"{i:03}.png"
        )
    (root / "malignant" / "broken.png").write_bytes(b"garbage")
    (root / "malignant" / "notes.txt").write_text("ignored: not an image")
    return root


def test_class_folder_of_real_images(class_folder: Path, breast_npz: Path) -> None:
    test = load_npz(breast_npz).test
    report = load_local_dataset(class_folder, SPEC)
    assert len(report.data) == 20
    assert report.data.class_names == ("malignant", "normal, benign")
    assert report.skipped and report.skipped[0][0] == "broken.png"
    assert sorted(report.data.labels.tolist()) == sorted(test.labels[:20].tolist())
    # Pixel-exact: PNG is lossless and 28x28 needs no resize.
    first = report.data.images[report.data.labels == test.labels[0]]
    assert any(np.array_equal(img, test.images[0]) for img in first)


def test_csv_manifest_with_names_and_indices(class_folder: Path) -> None:
    files = sorted(class_folder.rglob("0*.png"))
    rows = [(p.relative_to(class_folder), p.parent.name) for p in files[:5]]
    rows += [
        (p.relative_to(class_folder), "0" if p.parent.name == "malignant" else "1")
        for p in files[5:]
    ]
    with (class_folder / "manifest.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "label"])
        writer.writerows(rows)
    report = load_local_dataset(
        class_folder / "manifest.csv", SPEC, ("malignant", "normal, benign")
    )
    assert len(report.data) == 20


def test_manifest_with_unknown_label(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("file,label\na.png,cat\n")
    with pytest.raises(DataError, match="line 2"):
        load_local_dataset(tmp_path / "m.csv", SPEC, ("normal", "pneumonia"))


def test_manifest_without_header(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("a.png,1\n")
    with pytest.raises(DataError, match="file,label"):
        load_local_dataset(tmp_path / "m.csv", SPEC)


def test_dicom_folder_resized_to_model_input(tmp_path: Path) -> None:
    for cls, name in (("normal", "CT_small.dcm"), ("abnormal", "MR_small.dcm")):
        (tmp_path / cls).mkdir()
        shutil.copyfile(get_testdata_file(name, download=False), tmp_path / cls / name)
    (tmp_path / "abnormal" / "bad.dcm").write_bytes(b"\x00" * 300)
    report = load_local_dataset(tmp_path, SPEC)
    assert report.data.images.shape == (2, 28, 28, 1)
    assert report.data.class_names == ("abnormal", "normal")
    assert len(report.skipped) == 1


def test_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("no images")
    with pytest.raises(DataError, match="no readable images"):
        load_local_dataset(tmp_path, SPEC)


def test_site_npz_round_trip(tmp_path: Path) -> None:
    """What the demo, the harness and the low-memory child write is what agents read."""
    from privadx.common.data.arrays import LabeledImages
    from privadx.common.data.local import load_site_npz, save_site_npz

    rng = np.random.default_rng(0)
    data = LabeledImages(rng.integers(0, 256, (5, 8, 8, 1), dtype=np.uint8),
                         np.array([0, 1, 1, 0, 1]), ("normal", "pneumonia"))  # fmt: skip
    save_site_npz(tmp_path / "s.npz", data)
    back = load_site_npz(tmp_path / "s.npz", data.class_names)
    np.testing.assert_array_equal(back.images, data.images)
    np.testing.assert_array_equal(back.labels, data.labels)
    assert back.class_names == data.class_names
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left behind
