"""Resumable, checksum-verified download of MedMNIST files from their official location."""

from __future__ import annotations

import http.client
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from email.message import Message
from pathlib import Path
from typing import BinaryIO

from privadx.common.data.catalog import BASE_URL_ENV, DatasetInfo
from privadx.common.data.checksum import file_md5
from privadx.common.errors import DownloadError

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int | None], None]
"""Called with (bytes so far, total bytes or None) as a download advances."""

_BLOCK = 1 << 16


def fetch_dataset(
    info: DatasetInfo,
    folder: Path,
    *,
    size: int = 28,
    progress: ProgressFn | None = None,
    timeout: float = 30.0,
) -> Path:
    """Download one MedMNIST file into ``folder`` and verify its MD5.

    An interrupted download leaves ``NAME.npz.part`` behind; the next call resumes it with an
    HTTP range request. The final file appears (atomically renamed) only once its MD5 matches.

    Returns:
        Path of the verified file.

    Raises:
        DownloadError: Offline, HTTP error, or checksum mismatch.
    """
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / info.file_name(size)
    if target.is_file() and file_md5(target) == info.md5[size]:
        return target
    part = target.with_name(target.name + ".part")
    url = info.url(size)
    log.info("downloading %s from %s", target.name, url)
    download_resumable(url, part, progress=progress, timeout=timeout)
    actual = file_md5(part)
    if actual != info.md5[size]:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"downloaded {target.name} has MD5 {actual}, expected {info.md5[size]}; "
            "the partial file was removed, try again"
        )
    os.replace(part, target)
    return target


def download_resumable(
    url: str, part: Path, *, progress: ProgressFn | None = None, timeout: float = 30.0
) -> None:
    """Append the rest of ``url`` to ``part``, starting where an earlier attempt stopped.

    Raises:
        DownloadError: Unreachable host, HTTP error, or a transfer that broke off (the bytes
            received so far stay in ``part`` for the next attempt).
    """
    have = _size(part)
    request = urllib.request.Request(url, headers={"User-Agent": "privadx"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    total: int | None = None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if have and response.status == 200:
                have = 0  # the server ignored the range: start over
            total = _total_size(response.headers, have)
            with part.open("ab" if have else "wb") as out:
                copy_stream(response, out, have, total, progress)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            return  # the range starts at the end: the file is complete
        raise DownloadError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise DownloadError(
            f"cannot download {url} ({exc.reason}); if this machine is offline, copy the file "
            f"into {part.parent} by hand (or set {BASE_URL_ENV} to a mirror)"
        ) from exc
    except (http.client.HTTPException, OSError) as exc:
        raise DownloadError(
            f"download of {url} broke off ({type(exc).__name__}: {exc}); run the command "
            f"again to resume from the {_size(part)} bytes kept"
        ) from exc
    if total is not None and _size(part) < total:
        raise DownloadError(
            f"download of {url} stopped after {_size(part)} of {total} bytes; run the command "
            "again to resume"
        )


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _total_size(headers: Message, have: int) -> int | None:
    length = headers.get("Content-Length")
    return have + int(length) if length and length.isdigit() else None


def copy_stream(
    response: BinaryIO, out: BinaryIO, have: int, total: int | None, progress: ProgressFn | None
) -> None:
    """Copy a response body to a file in blocks, reporting progress."""
    while block := response.read(_BLOCK):
        out.write(block)
        have += len(block)
        if progress is not None:
            progress(have, total)
