"""Decode one image file (PNG, JPEG, DICOM) into a uint8 array ``(H, W, C)``.

DICOM pixel data goes through the modality LUT (rescale slope and intercept), then the VOI
window (Window Center / Width per DICOM PS3.3 C.11.2.1.2, or a VOI LUT sequence), then
MONOCHROME1 images are inverted so that higher always means brighter, as in the PNGs the
models are trained on.

Decoding cannot exhaust memory: a file's image size is read from its header first (PNG/JPEG
by Pillow without decoding, DICOM without its pixel data) and refused above ``max_pixels``
pixels per image (:data:`DEFAULT_MAX_PIXELS`, 40 megapixels: a mammogram is about 20), so
a 400 KB file declaring 20000x20000 pixels is never decoded; running out of memory anyway is
reported for that file like any other failure.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from privadx.common.errors import DataError

log = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 40_000_000
"""Pixels one image (one DICOM frame) may have; a user can raise it (``--max-pixels``)."""
MAX_FRAMES_FACTOR = 4
"""A multi-frame DICOM may hold at most this many images' worth of pixels in all."""
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})


def is_dicom(path: Path) -> bool:
    """Whether ``path`` is a DICOM file (by suffix or by the ``DICM`` preamble marker)."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with path.open("rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def is_supported(path: Path) -> bool:
    """Whether ``path`` looks like an image PrivaDx can read."""
    return path.suffix.lower() in IMAGE_SUFFIXES or is_dicom(path)


def read_image(path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read a PNG, JPEG or DICOM file as ``uint8`` ``(H, W, 1|3)``.

    Raises:
        DataError: Unreadable, truncated, unsupported, empty or too large image (also when
            decoding runs out of memory).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path.name}: no such file")
    try:
        if is_dicom(path):
            image = read_dicom(path, max_pixels=max_pixels)
        else:
            image = read_picture(path, max_pixels=max_pixels)
    except MemoryError:
        raise DataError(f"{path.name}: not enough memory to decode this image") from None
    if image.size == 0 or min(image.shape[:2]) < 1:
        raise DataError(f"{path.name}: empty image")
    return image


def _too_large(name: str, height: int, width: int, max_pixels: int, what: str = "") -> DataError:
    return DataError(
        f"{name}: {width}x{height}{what} is {height * width:,} pixels, above the limit of "
        f"{max_pixels:,} per image (raise it with --max-pixels if this is a real image)"
    )


_PILLOW_LIMIT = threading.Lock()


@contextlib.contextmanager
def _header_only(image_module: Any, path: Path) -> Iterator[Any]:
    """``Image.open`` (which reads only the header) with Pillow's own pixel limit lifted.

    The caller checks the size against its own limit before decoding; Pillow's limit would
    otherwise refuse large files first with a message of its own. The lock keeps the lifted
    limit from leaking to another thread's open.
    """
    with _PILLOW_LIMIT:
        saved = image_module.MAX_IMAGE_PIXELS
        image_module.MAX_IMAGE_PIXELS = None
        try:
            img = image_module.open(path)
        finally:
            image_module.MAX_IMAGE_PIXELS = saved
    with img:
        yield img


def read_picture(path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode PNG/JPEG (8- or 16-bit gray, RGB, palette, alpha) with Pillow."""
    from PIL import Image, UnidentifiedImageError

    try:
        with _header_only(Image, path) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise _too_large(path.name, height, width, max_pixels)
            img.load()
            mode = img.mode
            if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                return _to_uint8(np.asarray(img, dtype=np.float64))[..., np.newaxis]
            if mode in ("L", "1"):
                return np.asarray(img.convert("L"))[..., np.newaxis]
            if mode == "LA":
                return np.asarray(img.convert("L"))[..., np.newaxis]
            return np.asarray(img.convert("RGB"))
    except Image.DecompressionBombError as exc:  # Pillow's limit, if it checks on load
        raise DataError(f"{path.name}: {exc} (refused before decoding)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path.name}: not a readable PNG/JPEG image ({exc})") from exc


def _check_dicom_size(name: str, header: object, max_pixels: int) -> None:
    """Refuse a DICOM whose declared pixel data is too large, before decoding it."""
    try:
        rows = int(getattr(header, "Rows", 0) or 0)
        columns = int(getattr(header, "Columns", 0) or 0)
        frames = int(getattr(header, "NumberOfFrames", 1) or 1)
        samples = int(getattr(header, "SamplesPerPixel", 1) or 1)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name}: malformed DICOM image size ({exc})") from None
    if rows * columns > max_pixels:
        raise _too_large(name, rows, columns, max_pixels)
    if rows * columns * frames * samples > MAX_FRAMES_FACTOR * max_pixels:
        raise DataError(
            f"{name}: {frames} frames of {columns}x{rows}x{samples} are "
            f"{rows * columns * frames * samples:,} values, above the limit of "
            f"{MAX_FRAMES_FACTOR * max_pixels:,} (raise it with --max-pixels)"
        )


def read_dicom(path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a DICOM image: modality LUT, VOI window, MONOCHROME1 inversion, to uint8."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    force = path.suffix.lower() in DICOM_SUFFIXES
    try:
        header = pydicom.dcmread(path, force=force, stop_before_pixels=True)
        _check_dicom_size(path.name, header, max_pixels)
        ds = pydicom.dcmread(path, force=force)
        if "PixelData" not in ds:
            raise DataError(f"{path.name}: DICOM file has no pixel data")
        pixels = ds.pixel_array
    except DataError:
        raise
    except (
        InvalidDicomError,
        AttributeError,
        KeyError,
        ValueError,
        OSError,
        EOFError,
        NotImplementedError,
        RuntimeError,
        TypeError,
    ) as exc:
        raise DataError(f"{path.name}: unreadable DICOM ({type(exc).__name__}: {exc})") from exc
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        log.info("multi-frame DICOM (%d frames): using the middle frame", frames)
        pixels = pixels[frames // 2]
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    if pixels.ndim == 3 and pixels.shape[-1] in (3, 4):
        return _to_uint8(pixels[..., :3].astype(np.float64), full_range=pixels.dtype == np.uint8)
    if pixels.ndim != 2:
        raise DataError(f"{path.name}: unsupported DICOM pixel array shape {pixels.shape}")
    values = _modality(ds, pixels)
    values = _window(ds, values)
    if photometric == "MONOCHROME1":
        values = 255.0 - values
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)[..., np.newaxis]


def _modality(ds: object, pixels: np.ndarray) -> np.ndarray:
    slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
    intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
    return pixels.astype(np.float64) * slope + intercept


def _first(value: object) -> float:
    """The first of a DICOM multi-valued number (Window Center may hold several)."""
    from pydicom.multival import MultiValue

    return float(value[0] if isinstance(value, MultiValue | list | tuple) else value)  # type: ignore[arg-type]


def _window(ds: object, values: np.ndarray) -> np.ndarray:
    """Map to [0, 255] through the DICOM linear VOI window, or the full range if none."""
    center = getattr(ds, "WindowCenter", None)
    width = getattr(ds, "WindowWidth", None)
    if center is not None and width is not None:
        c, w = _first(center), _first(width)
        if w >= 1:
            scaled = ((values - (c - 0.5)) / (w - 1) + 0.5) * 255.0
            return np.clip(scaled, 0.0, 255.0)
    return _to_uint8(values).astype(np.float64)


def _to_uint8(values: np.ndarray, *, full_range: bool = False) -> np.ndarray:
    if full_range:
        return np.clip(values, 0, 255).astype(np.uint8)
    lo, hi = float(np.min(values)), float(np.max(values))
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.clip(np.rint((values - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)
