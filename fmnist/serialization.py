"""Reading files a user hands us without running code from them, and without reading more than such a file can be.

A ``.ckpt`` is a pickle and so was the scikit-learn cache (joblib): unpickling a crafted file runs
whatever it names. Every checkpoint here is read with ``torch.load(..., weights_only=True)`` (tensors
and plain containers only) and every fitted estimator with ``skops.io`` behind an explicit list of
the types that estimator needs (:mod:`fmnist.baselines.estimator_files`, so training never imports skops). A file that needs more is refused with one sentence, never loaded.

The JSON and YAML files fmnist reads back (metrics.json, reports, configs, sweep files) are small; one
that is larger than :data:`MAX_TEXT_BYTES` was not written by fmnist, and it is refused from its size,
before it is read (a 2 GB ``metrics.json`` would otherwise take gigabytes of memory to parse).
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from fmnist.errors import FmnistError, human_bytes

_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
MAX_TEXT_BYTES = 16 * 2**20  # a metrics.json is a few KB, a report's a few hundred; configs smaller still


def too_large(path: Path, size: int, max_bytes: int) -> FmnistError:
    return FmnistError(f"{path} is {human_bytes(size)}, over the {human_bytes(max_bytes)} a file of this kind can be; it was "
                       f"not written by fmnist (or it was damaged): pass the right file.")


def read_text_capped(path: str | Path, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """A small text file's contents (UTF-8), refused from its size before it is read when over ``max_bytes``.

    Raises OSError (missing, unreadable) and UnicodeDecodeError as ``Path.read_text`` does; callers name those.
    """
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise too_large(path, size, max_bytes)
    with path.open("rb") as handle:
        data = handle.read(max_bytes + 1)  # the file may have grown since stat
    if len(data) > max_bytes:
        raise too_large(path, len(data), max_bytes)
    return data.decode("utf-8-sig")


def read_json_capped(path: str | Path, max_bytes: int = MAX_TEXT_BYTES) -> Any:
    """A small JSON file's value (see :func:`read_text_capped`); ValueError for text that is not JSON."""
    return json.loads(read_text_capped(path, max_bytes))


# What torch.load raises for a missing, unreadable, foreign or code-carrying file.
CHECKPOINT_READ_ERRORS = (pickle.UnpicklingError, OSError, RuntimeError, EOFError, ValueError)


def checkpoint_error(path: Path, exc: BaseException) -> FmnistError:
    """The one sentence for a checkpoint ``torch.load(weights_only=True)`` could not or would not read."""
    if isinstance(exc, pickle.UnpicklingError):
        found = _GLOBAL.search(str(exc))
        if found is None:  # not a pickle of plain values at all: garbage, truncated, another format
            return FmnistError(f"{path} is not a readable checkpoint (not a torch.save file of tensors and "
                               f"plain values).")
        return FmnistError(f"refusing to load {path}: it holds Python objects beyond tensors and plain values "
                           f"(it asks for {found.group(1)}), and loading those could run code; use a checkpoint "
                           f"written by fmnist's training or re-save the weights as a plain state dict.")
    if isinstance(exc, FileNotFoundError):
        return FmnistError(f"checkpoint {path} does not exist; pass a run folder or an existing .ckpt file.")
    first = str(exc).splitlines()[0].split(". ")[0].rstrip(".") if str(exc) else "empty file"  # one sentence
    return FmnistError(f"{path} is not a readable checkpoint ({type(exc).__name__}: {first}).")


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint's dictionary, read with ``weights_only=True``; anything else is refused."""
    path = Path(path)
    try:
        raw = torch.load(path, map_location=map_location, weights_only=True)
    except CHECKPOINT_READ_ERRORS as exc:
        raise checkpoint_error(path, exc) from None
    if not isinstance(raw, dict):
        raise FmnistError(f"{path} is not a checkpoint dictionary (found {type(raw).__name__}).")
    return raw


def weights_mismatch(expected: dict[str, torch.Tensor], found: dict[str, Any]) -> str | None:
    """What keeps ``found`` (a checkpoint's state dict) from loading into a model with ``expected`` weights."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    reshaped = [f"{k} {tuple(found[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
                if k in found and hasattr(found[k], "shape") and tuple(found[k].shape) != tuple(v.shape)]
    if not (missing or unexpected or reshaped):
        return None
    parts = []
    for label, names in (("missing", missing), ("unexpected", unexpected), ("other shapes", reshaped)):
        if names:
            parts.append(f"{len(names)} {label} (e.g. {', '.join(names[:2])})")
    return "; ".join(parts)
