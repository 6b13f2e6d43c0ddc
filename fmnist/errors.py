"""User-facing error types.

Everything a user can get wrong (paths, names, files, flags) raises a subclass of
:class:`FmnistError`; the command-line entry points print its one-sentence message and
exit non-zero instead of showing a traceback.
"""

from __future__ import annotations


class FmnistError(Exception):
    """A mistake the user can fix; the message says what, where and how."""


class IDXError(FmnistError, ValueError):
    """An IDX file is corrupt, truncated or inconsistent with its partner file."""


class DataNotFoundError(FmnistError, FileNotFoundError):
    """A dataset is not on disk and could not be downloaded."""
