"""Give back the library pages TensorFlow's import touched but training never reads again.

Importing TensorFlow 2.14 runs the static initialisers spread across its 600 MB native
libraries; the kernel maps every page they touch (and, by fault-around, the pages next to
them) into the process. Those are clean, read-only file pages: they count in the resident
set (about 310 MB of the 500 MB a fresh import holds) although a round of training reads
only about 70 MB of them again.

:func:`release_library_pages` asks the kernel to reclaim them now
(``madvise(MADV_PAGEOUT)``, Linux 5.4 and newer) instead of whenever memory runs short.
Nothing is lost: a page needed later is read back from the library file on first use.
Pages that another process maps too (two agents on one machine) are left alone by the
kernel. Anonymous memory (the Python heap, tensors) is never touched.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)

MADV_PAGEOUT = 21
"""``<linux/mman.h>``: reclaim these pages now (clean file pages are simply dropped)."""


def read_only_file_mappings(maps: str) -> list[tuple[int, int]]:
    """Address ranges of ``/proc/PID/maps`` lines that map a file and are not writable.

    Writable mappings (a library's data segment, copy-on-write pages) are left out: their
    pages may hold the process's own changes.
    """
    ranges = []
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or "w" in fields[1] or not fields[5].startswith("/"):
            continue
        start, end = (int(a, 16) for a in fields[0].split("-"))
        ranges.append((start, end))
    return ranges


def release_library_pages() -> int:
    """Ask the kernel to reclaim this process's clean, read-only file pages.

    Returns:
        How many bytes of mappings were advised (0 where the kernel or platform cannot).
    """
    if not sys.platform.startswith("linux"):
        return 0
    try:
        maps = Path("/proc/self/maps").read_text()
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    except OSError as exc:
        log.debug("cannot release library pages: %s", exc)
        return 0
    madvise = libc.madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    advised = 0
    for start, end in read_only_file_mappings(maps):
        # Fails (EINVAL) on kernels older than 5.4 and on locked or device mappings.
        if madvise(start, end - start, MADV_PAGEOUT) == 0:
            advised += end - start
    log.debug("advised %d MB of library mappings out", advised >> 20)
    return advised
