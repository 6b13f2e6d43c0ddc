"""User-facing error types, and the one way their sentences write a size.

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


def human_bytes(n: int) -> str:
    """``26214400`` -> ``25.0 MiB``: sizes in error sentences (a download cap, a file refused for its size)."""
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB" if n >= 2**10 else f"{n} bytes"
