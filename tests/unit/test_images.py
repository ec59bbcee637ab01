from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from privadx.common.data.images import is_dicom, read_image
from privadx.common.errors import DataError


def dicom_file(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom ships {name}"
    return Path(path)


def test_png_gray_rgb_16bit_and_jpeg(tmp_path: Path) -> None:
    gray = np.arange(28 * 28, dtype=np.uint16).reshape(28, 28) % 256
    Image.fromarray(gray.astype(np.uint8)).save(tmp_path / "g.png")
    Image.fromarray(np.dstack([gray] * 3).astype(np.uint8)).save(tmp_path / "c.png")
    Image.fromarray((gray * 200).astype(np.uint16)).save(tmp_path / "g16.png")
    Image.fromarray(gray.astype(np.uint8)).save(tmp_path / "g.jpg", quality=95)
    assert np.array_equal(read_image(tmp_path / "g.png")[..., 0], gray)
    assert read_image(tmp_path / "c.png").shape == (28, 28, 3)
    g16 = read_image(tmp_path / "g16.png")
    assert g16.dtype == np.uint8 and g16.max() == 255 and g16.min() == 0
    assert np.abs(read_image(tmp_path / "g.jpg")[..., 0].astype(int) - gray).mean() < 8


@pytest.mark.parametrize("content", [b"", b"not an image", b"\x89PNG\r\n\x1a\n\x00\x00"])
def test_corrupt_pictures_raise_data_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "bad.png").write_bytes(content)
    with pytest.raises(DataError, match=r"bad\.png"):
        read_image(tmp_path / "bad.png")


def test_truncated_png(tmp_path: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(
        tmp_path / "t.png"
    )
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError):
        read_image(tmp_path / "t.png")


def test_dicom_ct_applies_rescale_and_window() -> None:
    path = dicom_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    img = read_image(path)
    assert is_dicom(path)
    assert img.shape == (*ds.pixel_array.shape, 1) and img.dtype == np.uint8
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    # Brightness must follow Hounsfield units monotonically.
    order = np.argsort(hu.ravel())
    assert np.all(np.diff(img.ravel()[order].astype(int)) >= 0)


def test_dicom_window_center_width_clips(tmp_path: Path) -> None:
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    ds.WindowCenter, ds.WindowWidth = float(np.median(hu)), 100.0
    ds.save_as(tmp_path / "win.dcm")
    img = read_image(tmp_path / "win.dcm")[..., 0]
    assert np.all(img[hu < np.median(hu) - 60] == 0)
    assert np.all(img[hu > np.median(hu) + 60] == 255)


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    src = dicom_file("MR_small.dcm")
    normal = read_image(src)
    ds = pydicom.dcmread(src)
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "m1.dcm")
    inverted = read_image(tmp_path / "m1.dcm")
    assert np.array_equal(inverted.astype(int), 255 - normal.astype(int))


def test_dicom_without_suffix_is_detected(tmp_path: Path) -> None:
    shutil.copyfile(dicom_file("CT_small.dcm"), tmp_path / "IM0001")
    assert is_dicom(tmp_path / "IM0001")
    assert read_image(tmp_path / "IM0001").shape[-1] == 1


@pytest.mark.parametrize("name", ["MR_truncated.dcm", "rtplan.dcm"])
def test_broken_or_pixelless_dicom(name: str) -> None:
    with pytest.raises(DataError):
        read_image(dicom_file(name))


def test_garbage_with_dcm_suffix(tmp_path: Path) -> None:
    (tmp_path / "x.dcm").write_bytes(b"\x00" * 10)
    with pytest.raises(DataError, match=r"x\.dcm"):
        read_image(tmp_path / "x.dcm")


def png_bomb(path: Path, side: int = 20000) -> Path:
    """A real PNG of ``side`` x ``side`` pixels that compresses to a few hundred KB."""
    Image.new("1", (side, side)).save(path)
    return path


def dicom_bomb(path: Path, *, rle: bool) -> Path:
    """A real DICOM declaring 65535 x 65535 pixels with a few bytes of pixel data."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import ExplicitVRLittleEndian, RLELossless, SecondaryCaptureImageStorage

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    meta.TransferSyntaxUID = RLELossless if rle else ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, "1.2.3.4"
    ds.Rows = ds.Columns = 65535
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if rle:
        ds.PixelData = encapsulate([b"\0" * 64])
        ds["PixelData"].is_undefined_length = True
    else:
        ds.PixelData = b"\0" * 64
    ds.save_as(path, enforce_file_format=True)
    return path


def test_image_bombs_are_refused_before_decoding(tmp_path: Path) -> None:
    import resource

    bomb = png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 1_000_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DataError, match="20000x20000 is 400,000,000 pixels, above the limit"):
        read_image(bomb)
    for rle in (True, False):
        path = dicom_bomb(tmp_path / f"bomb-{rle}.dcm", rle=rle)
        assert path.stat().st_size < 2000
        with pytest.raises(DataError, match="65535x65535 is 4,294,836,225 pixels"):
            read_image(path)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200, f"peak memory grew by {grown_mb:.0f} MB"  # decoding would be GBs


def test_the_pixel_limit_applies_to_real_images_and_can_be_raised(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((300, 400), np.uint8)).save(tmp_path / "ok.png")
    with pytest.raises(DataError, match="400x300 is 120,000 pixels, above the limit of 100,000"):
        read_image(tmp_path / "ok.png", max_pixels=100_000)
    assert read_image(tmp_path / "ok.png", max_pixels=120_000).shape == (300, 400, 1)
    ct = dicom_file("CT_small.dcm")
    with pytest.raises(DataError, match="128x128 is 16,384 pixels"):
        read_image(ct, max_pixels=10_000)


def test_running_out_of_memory_is_a_per_file_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import privadx.common.data.images as images

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "x.png")

    def exhausted(path: Path, *, max_pixels: int) -> np.ndarray:
        raise MemoryError

    monkeypatch.setattr(images, "read_picture", exhausted)
    with pytest.raises(DataError, match="not enough memory"):
        read_image(tmp_path / "x.png")
