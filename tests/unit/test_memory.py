"""Releasing clean library pages (edge.memory): which mappings, and that the pages go."""

from __future__ import annotations

import mmap
import os
import re
import sys
from pathlib import Path

import pytest

from edge.memory import read_only_file_mappings, release_library_pages

MAPS = """\
7f0000000000-7f0000200000 r--p 00000000 fd:00 123 /venv/lib/libtensorflow_cc.so.2
7f0000200000-7f0000800000 r-xp 00200000 fd:00 123 /venv/lib/libtensorflow_cc.so.2
7f0000800000-7f0000900000 rw-p 00800000 fd:00 123 /venv/lib/libtensorflow_cc.so.2
7f0000900000-7f0000a00000 rw-p 00000000 00:00 0
7f0000a00000-7f0000a01000 r--p 00000000 00:00 0 [vvar]
7f0000b00000-7f0000b10000 r--s 00000000 fd:00 99 /data/with space (deleted)
"""


def test_only_read_only_file_mappings_are_chosen() -> None:
    assert read_only_file_mappings(MAPS) == [
        (0x7F0000000000, 0x7F0000200000),
        (0x7F0000200000, 0x7F0000800000),
        (0x7F0000B00000, 0x7F0000B10000),
    ]


def _resident_kb(start: int) -> int:
    """Resident kB of the mapping that starts at ``start`` (from /proc/self/smaps)."""
    text = Path("/proc/self/smaps").read_text()
    head = re.search(rf"^{start:x}-[0-9a-f]+ .*$", text, re.M)
    assert head is not None
    return int(re.search(r"^Rss:\s+(\d+) kB", text[head.end() :], re.M).group(1))  # type: ignore[union-attr]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="MADV_PAGEOUT is Linux's")
def test_a_touched_read_only_file_mapping_leaves_the_resident_set(tmp_path: Path) -> None:
    """A file mapped read-only by this process alone and read through: its pages are
    resident, and after the release they are not (reading them again still works)."""
    path = tmp_path / "library.bin"
    size = 8 << 20
    with path.open("wb") as out:  # written back before mapping: only clean pages are dropped
        out.write(bytes(range(256)) * (size // 256))
        out.flush()
        os.fsync(out.fileno())
    with path.open("rb") as f, mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ) as view:
        total = sum(view[i] for i in range(0, size, mmap.PAGESIZE))
        start = int(re.search(rf"^([0-9a-f]+)-.* {re.escape(str(path))}$",
                              Path("/proc/self/maps").read_text(), re.M).group(1), 16)  # type: ignore[union-attr]  # fmt: skip
        before = _resident_kb(start)
        assert before >= (size >> 10) * 0.9
        advised = release_library_pages()
        if advised == 0:
            pytest.skip("this kernel does not support MADV_PAGEOUT (Linux 5.4 or newer)")
        assert advised >= size
        assert _resident_kb(start) < before / 4
        assert sum(view[i] for i in range(0, size, mmap.PAGESIZE)) == total
