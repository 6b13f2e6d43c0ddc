"""Files a later command reads are written atomically: a failure keeps the previous file, and says why."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from fmnist.errors import FmnistError
from fmnist.files import json_text, write_atomic, write_json_atomic, write_text_atomic


def test_a_write_that_fails_half_way_keeps_the_previous_file(tmp_path: Path) -> None:
    path = write_text_atomic(tmp_path / "metrics.json", "old\n")

    def half(handle: object) -> None:
        handle.write(b"new, but only ha")  # type: ignore[attr-defined]
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_atomic(path, half)
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_full_disk_is_one_sentence_and_keeps_the_previous_file(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_text_atomic(tmp_path / "metrics.json", "old\n")

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(FmnistError, match=r"^no space left on the disk holding .*metrics\.json; free some space"):
        write_text_atomic(path, "new\n")
    assert path.read_text() == "old\n" and len(list(tmp_path.iterdir())) == 1


def test_new_files_get_the_users_usual_permissions_and_old_ones_keep_theirs(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        fresh = write_text_atomic(tmp_path / "fresh.txt", "x")
        kept = tmp_path / "kept.txt"
        kept.write_text("x")
        kept.chmod(0o640)
        write_text_atomic(kept, "y")
    finally:
        os.umask(old_umask)
    assert fresh.stat().st_mode & 0o777 == 0o644 and kept.stat().st_mode & 0o777 == 0o640


def test_json_never_holds_nan_or_infinity(tmp_path: Path) -> None:
    import numpy as np

    text = json_text({"a": float("nan"), "b": [float("-inf"), 1.5], "c": np.float32("nan")}, default=float)
    assert text == '{\n  "a": null,\n  "b": [\n    null,\n    1.5\n  ],\n  "c": null\n}\n'
    path = write_json_atomic(tmp_path / "x.json", {"loss": float("inf")}, indent=None)
    assert path.read_text() == '{"loss": null}\n'
