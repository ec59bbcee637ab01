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
import threading
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


def worker_cpu_seconds() -> float:
    """CPU time (user + system, every thread) spent so far by this process's TFF workers.

    TFF runs client work in its ``worker_binary`` child, so the simulation's own
    ``time.process_time()`` misses most of a round's CPU time.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in worker_pids(os.getpid()):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (stat fields 14, 15)
    return total / ticks


def stop_workers(timeout: float = 5.0) -> int:
    """Stop this process's TFF worker subprocesses (SIGTERM, then SIGKILL); return how many.

    The workers are not reaped here: TFF's service manager holds their ``Popen`` objects and
    signals and waits for them itself, which would fail on a PID that was already reaped.
    """
    pids = worker_pids(os.getpid())
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline and _running(pid):
            time.sleep(0.05)
        if _running(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if pids:
        log.debug("stopped %d TFF worker process(es)", len(pids))
    return len(pids)


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (exited, waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


_installed = False


def _on_sigterm(signum: int, _frame: FrameType | None) -> None:
    stop_workers()
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def tff_runtime() -> Iterator[None]:
    """Run the body with TFF's local runtime and guarantee its workers are stopped after.

    Also installs (once) an ``atexit`` hook and, in the main thread, a SIGTERM handler for the
    same purpose. It installs a fresh TFF local C++ execution context first.
    """
    global _installed
    if not _installed:
        atexit.register(stop_workers)
        main = threading.current_thread() is threading.main_thread()
        if main and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, _on_sigterm)
        _installed = True
    # A fresh local C++ context: TFF's context stack is thread-local (only the importing thread
    # has a default), and a context whose worker was stopped earlier would not restart it.
    from privadx.common.deps import require

    require("tensorflow_federated").backends.native.set_sync_local_cpp_execution_context()
    try:
        yield
    finally:
        stop_workers()


@contextlib.contextmanager
def op_determinism(enabled: bool) -> Iterator[None]:
    """Run the body with TensorFlow's op determinism on (or off), then restore what it was.

    The switch is process-wide and TensorFlow 2.14 exports only the call that turns it on, so
    a plain simulation used to leave it on for the rest of the process: a DP aggregator built
    later in the same process (a notebook, a test worker) then failed on TFF's unseeded noise.
    """
    from tensorflow.python.framework import config  # the switch's off call and getter

    switch = {True: config.enable_op_determinism, False: config.disable_op_determinism}
    before = bool(config.is_op_determinism_enabled())
    switch[enabled]()
    try:
        yield
    finally:
        switch[before]()
