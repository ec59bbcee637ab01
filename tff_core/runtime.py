"""Start and, above all, stop TFF's C++ runtime.

TFF 0.87's default execution context launches a ``worker_binary`` subprocess that inherits
our stdout/stderr and is not stopped when Python exits: every run would leave one behind
(about 140 MB) and keep any pipe reading our output open forever. :func:`tff_runtime` stops
every such child of this process on exit, on SIGTERM and at interpreter shutdown.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

log = logging.getLogger(__name__)

WORKER_NAME = "worker_binary"


def worker_pids(parent: int | None = None) -> list[int]:
    """PIDs of TFF ``worker_binary`` processes (children of ``parent``, or all)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if not cmdline.endswith(WORKER_NAME):
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if parent is None or ppid == parent:
            pids.append(int(entry.name))
    return pids


def stop_workers(timeout: float = 5.0) -> int:
    """Stop this process's TFF worker subprocesses (SIGTERM, then SIGKILL); return how many."""
    pids = worker_pids(os.getpid())
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _reap(pid)
    if pids:
        log.debug("stopped %d TFF worker process(es)", len(pids))
    return len(pids)


def _alive(pid: int) -> bool:
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


_installed = False


def _on_sigterm(signum: int, _frame: FrameType | None) -> None:
    stop_workers()
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def tff_runtime() -> Iterator[None]:
    """Run the body with TFF's local runtime and guarantee its workers are stopped after.

    Also installs (once) an ``atexit`` hook and a SIGTERM handler for the same purpose.
    """
    global _installed
    if not _installed:
        atexit.register(stop_workers)
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, _on_sigterm)
        _installed = True
    try:
        yield
    finally:
        stop_workers()
