"""The PrivaDx exception hierarchy and the process exit codes it maps to.

Every error a user can cause (a bad flag, a corrupt file, a missing dataset) is raised as a
subclass of :class:`PrivadxError`; the CLI catches it, prints its message on stderr and exits
with the class's documented ``exit_code`` instead of a traceback.
"""

from __future__ import annotations


class PrivadxError(Exception):
    """Base class of every error PrivaDx reports to its user."""

    exit_code = 1


class InputError(PrivadxError):
    """The user asked for something malformed: a bad flag value, a missing file."""

    exit_code = 2


class DataError(PrivadxError):
    """A dataset or image is missing, unreadable, corrupt or fails its checksum."""

    exit_code = 3


class DownloadError(DataError):
    """A dataset could not be downloaded (offline, HTTP error, checksum mismatch)."""

    exit_code = 4


class ModelError(PrivadxError):
    """A model or weights file is unreadable, inconsistent or fails verification."""

    exit_code = 5


class DependencyError(PrivadxError):
    """An optional dependency (an install extra) is needed but not installed."""

    exit_code = 6


EXIT_PARTIAL = 7
"""Exit code of a batch command (diagnosis) when some items failed and the others succeeded."""
