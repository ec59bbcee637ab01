"""Headless Chromium for the tests that look at a page as a person would (Debian ``chromium``).

Every start gets a fresh profile and the flags that keep it off the network: a report must
render from its own file alone.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import missing

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def chromium() -> str:
    """The browser's path; skip the test (fail under CI) when there is none."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        missing("headless Chromium is not installed (Debian package 'chromium')")
    return found


def _run(page: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )


def dump_dom(page: Path) -> str:
    """The page's DOM as Chromium built it (after parsing and layout)."""
    return _run(page, "--dump-dom").stdout


def screenshot(page: Path, out: Path, *, width: int = 1400, height: int = 1600) -> Path:
    """A PNG of the page as Chromium draws it in a ``width`` x ``height`` window."""
    _run(page, f"--screenshot={out}", f"--window-size={width},{height}")
    return out
