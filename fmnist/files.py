"""Writing files that a later command reads: atomically, finite, and with one sentence when the disk says no.

Why: a run killed mid-write, or a disk that fills up, must never leave half a ``metrics.json``, record or
checkpoint where the next command (``--resume``, ``evaluate.py``, the results page) will read it. Every such
file is written to a temporary file in the same folder, flushed to disk, and renamed over the old one, so a
reader sees either the previous good file or the new one. JSON we write never holds NaN or Infinity (strict
parsers refuse them): non-finite floats become ``null``.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any

from fmnist.errors import FmnistError

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class WriteError(FmnistError):
    """A file could not be written (a full disk, a read-only folder); the previous file, if any, is kept."""

    def __init__(self, what: str, advice: str, path: Path, full: bool) -> None:
        super().__init__(f"{what}; {advice}")
        self.what, self.path, self.full = what, path, full  # what: "no space left on the disk holding PATH"


def disk_error(path: Path, exc: OSError) -> WriteError:
    """One sentence for an OSError while writing ``path`` (a full disk named as such)."""
    if exc.errno in NO_SPACE:
        return WriteError(f"no space left on the disk holding {path}", "free some space (or write elsewhere) and "
                          "run the command again: the previous file, if any, is kept.", path, True)
    return WriteError(f"cannot write {path} ({exc.strerror or exc})", "check the folder exists and is writable.",
                      path, False)


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path``, flush it to disk, then rename it over ``path``.

    A failure (full disk, signal, exception in ``write``) removes the temporary file and keeps the old ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise disk_error(path, exc) from None
    tmp = Path(tmp_name)
    handle = None
    try:
        os.chmod(fd, _mode_for(path))
        with os.fdopen(fd, "wb") as raw:
            handle = _Recording(raw)
            write(handle)  # type: ignore[arg-type]
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise disk_error(path, exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        if handle is not None and handle.error is not None:  # e.g. torch.save reports ENOSPC as a RuntimeError
            raise disk_error(path, handle.error) from None
        raise
    return path


class _Recording:
    """A file handle that remembers the OSError a write raised: torch.save, for one, turns a full disk into
    ``RuntimeError: unexpected pos``, and the sentence must still say the disk is full."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._handle.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


def _mode_for(path: Path) -> int:
    """The permissions a plain ``open(path, "w")`` would give: the old file's, else 0666 minus the umask."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def copy_atomic(source: str | Path, path: str | Path) -> Path:
    """A copy of ``source`` at ``path``, written atomically (``shutil.copyfile`` truncates ``path`` first)."""
    with Path(source).open("rb") as handle:
        return write_atomic(path, lambda out: shutil.copyfileobj(handle, out))


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    return write_atomic(path, lambda handle: handle.write(data))


def write_text_atomic(path: str | Path, text: str) -> Path:
    """``text`` as UTF-8; characters that cannot be encoded (a file name's undecodable bytes) are escaped."""
    return write_bytes_atomic(path, text.encode("utf-8", errors="backslashreplace"))


def write_csv_atomic(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """A CSV file (header, then rows), written atomically."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return write_text_atomic(path, buffer.getvalue())


def write_dict_csv_atomic(path: str | Path, fieldnames: Sequence[str], rows: Iterable[dict[str, Any]]) -> Path:
    """A CSV file of dictionaries (keys beyond ``fieldnames`` are an error, as in ``csv.DictWriter``), atomically."""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=fieldnames)
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomic(path, buffer.getvalue())


def save_figure_atomic(fig: Any, path: str | Path, **savefig_kwargs: Any) -> Path:
    """``fig.savefig`` into a temporary file beside ``path``, then renamed (the format comes from the suffix)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    return write_atomic(path, lambda handle: fig.savefig(handle, format=fmt, **savefig_kwargs))


def finite(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, +-Infinity) replaced by None, containers walked."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def json_text(obj: Any, *, sort_keys: bool = False, indent: int | None = 2,
              default: Callable[[Any], Any] | None = None) -> str:
    """Strict JSON (no NaN/Infinity: they become null) with a final newline."""
    if default is not None:  # numpy scalars and the like first, so that their NaNs are caught too
        obj = json.loads(json.dumps(obj, default=default, allow_nan=True))
    return json.dumps(finite(obj), sort_keys=sort_keys, indent=indent, allow_nan=False, ensure_ascii=False) + "\n"


def write_json_atomic(path: str | Path, obj: Any, *, sort_keys: bool = False, indent: int | None = 2,
                      default: Callable[[Any], Any] | None = None) -> Path:
    """Write ``obj`` as strict JSON, atomically (see :func:`write_atomic`)."""
    return write_text_atomic(path, json_text(obj, sort_keys=sort_keys, indent=indent, default=default))
