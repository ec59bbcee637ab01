"""The PrivaDx exception hierarchy and the process exit codes it maps to.

Every error a user can cause (a bad flag, a corrupt file, a missing dataset) is raised as a
subclass of :class:`PrivadxError`; the CLI catches it, prints its message on stderr and exits
with the class's documented ``exit_code`` instead of a traceback.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Every exit status of the ``privadx`` command, in one place (help and docs list these)."""

    OK = 0
    UNEXPECTED = 1
    BAD_INPUT = 2
    DATA = 3
    DOWNLOAD = 4
    MODEL = 5
    DEPENDENCY = 6
    PARTIAL = 7
    BROKER = 8
    QUORUM = 9
    TRUST = 10
    SECURE_AGGREGATION = 11
    INTERRUPTED = 130

    @property
    def meaning(self) -> str:
        """What the code tells the caller."""
        return _MEANING[self]


_MEANING = {
    ExitCode.OK: "ok",
    ExitCode.UNEXPECTED: "unexpected error (a bug: -v shows the traceback)",
    ExitCode.BAD_INPUT: "bad input or usage",
    ExitCode.DATA: "data error",
    ExitCode.DOWNLOAD: "download error",
    ExitCode.MODEL: "model error (unreadable, inconsistent or refused model)",
    ExitCode.DEPENDENCY: "missing optional dependency, or a role this Python cannot run",
    ExitCode.PARTIAL: "some items of a batch failed, the others succeeded",
    ExitCode.BROKER: "broker unreachable or refused the connection",
    ExitCode.QUORUM: "too few sites for a round",
    ExitCode.TRUST: "certificate or signature check failed",
    ExitCode.SECURE_AGGREGATION: "secure aggregation could not complete",
    ExitCode.INTERRUPTED: "interrupted",
}


def exit_code_lines() -> str:
    """``"0 ok; 1 unexpected error ..."``: the exit codes as the help and docs list them."""
    return "; ".join(f"{int(c)} {c.meaning}" for c in ExitCode)


class PrivadxError(Exception):
    """Base class of every error PrivaDx reports to its user."""

    exit_code: int = ExitCode.UNEXPECTED


class InputError(PrivadxError):
    """The user asked for something malformed: a bad flag value, a missing file."""

    exit_code = ExitCode.BAD_INPUT


class DataError(PrivadxError):
    """A dataset or image is missing, unreadable, corrupt or fails its checksum."""

    exit_code = ExitCode.DATA


class DownloadError(DataError):
    """A dataset could not be downloaded (offline, HTTP error, checksum mismatch)."""

    exit_code = ExitCode.DOWNLOAD


class ModelError(PrivadxError):
    """A model or weights file is unreadable, inconsistent or fails verification."""

    exit_code = ExitCode.MODEL


class DependencyError(PrivadxError):
    """An optional dependency (an install extra) is needed but not installed."""

    exit_code = ExitCode.DEPENDENCY


EXIT_PARTIAL = ExitCode.PARTIAL
"""Exit code of a batch command (diagnosis) when some items failed and the others succeeded."""
