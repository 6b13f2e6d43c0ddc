"""Corrupted test sets on disk: one ``<name>.npz`` per corruption plus a manifest, written once and reused.

The corruptions themselves are :mod:`fmnist.data.corruptions`; this module writes a set to a folder (atomically,
under a file lock, so parallel evaluations agree), checks every file against its manifest when reading, and
names the sets (``fashion-c``) that ``--dataset`` accepts.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import scipy
from filelock import FileLock

from fmnist.data.corruptions import (
    CORRUPTIONS,
    GENERATOR_VERSION,
    IMAGE_SHAPE,
    Severity,
    check_images,
    check_labels,
    check_name,
    check_seed,
    check_severity,
    corrupt_with_severities,
)
from fmnist.data.sources import ENV_VAR, load_dataset
from fmnist.errors import FmnistError
from fmnist.files import write_atomic

MANIFEST_NAME = "manifest.json"
LOCK_NAME = ".lock"


# -- files -----------------------------------------------------------------------------------------
def _array_sha256(array: np.ndarray) -> str:
    digest = hashlib.sha256(f"{array.dtype.str}{list(array.shape)}".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> str:
    """Write ``path`` atomically (:func:`fmnist.files.write_atomic`); return its sha256."""
    return _file_sha256(write_atomic(path, write))


def _manifest_key(images: np.ndarray, labels: np.ndarray, seed: int, severity: Severity) -> dict:
    """The part of the manifest that decides whether existing files can be reused."""
    return {
        "generator": "fmnist.data.corruptions",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "severity": severity,
        "names": list(CORRUPTIONS),
        "source": {"count": len(images), "images_sha256": _array_sha256(images),
                   "labels_sha256": _array_sha256(labels)},
    }


def _load_manifest(folder: Path) -> dict:
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise FmnistError(f"{folder}: no corrupted test set here ({MANIFEST_NAME} is missing); "
                          f"create it with fmnist.data.corruptions.write_corrupted.")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise FmnistError(f"{path}: unreadable manifest ({exc}); delete the folder and rerun write_corrupted.") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise FmnistError(f"{path}: not a corrupted-set manifest (no 'files' table); "
                          f"delete the folder and rerun write_corrupted.")
    return manifest


def _reusable(folder: Path, key: dict) -> bool:
    """Whether ``folder`` already holds exactly the set ``key`` describes, every file intact."""
    try:
        manifest = _load_manifest(folder)
    except FmnistError:
        return False
    if any(manifest.get(field) != value for field, value in key.items()):
        return False
    for name in CORRUPTIONS:
        entry, path = manifest["files"].get(name), folder / f"{name}.npz"
        if not isinstance(entry, dict) or not path.is_file() or _file_sha256(path) != entry.get("sha256"):
            return False
    return True


def write_corrupted(folder: str | Path, images: np.ndarray, labels: np.ndarray, *, seed: int = 0,
                    severity: Severity = "random") -> Path:
    """Write one ``<name>.npz`` per corruption plus ``manifest.json`` into ``folder``; return ``folder``.

    Each file holds ``images`` (uint8 [N, 28, 28]), ``labels`` and ``severities`` (uint8 [N]). A
    folder whose manifest matches (seed, severity, names, source hashes, generator version, every
    file's sha256) is reused as is; otherwise every file is regenerated. All writes are atomic.
    """
    folder = Path(folder)
    images = check_images(images)
    labels = check_labels(labels, len(images))
    severity, seed = check_severity(severity), check_seed(seed)
    key = _manifest_key(images, labels, seed, severity)
    if _reusable(folder, key):
        return folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FmnistError(f"{folder}: cannot create the folder ({exc}); choose a writable location.") from exc
    with FileLock(folder / LOCK_NAME):  # a second writer waits, then finds the set done and reuses it
        if _reusable(folder, key):  # another process finished it while we waited
            return folder
        (folder / MANIFEST_NAME).unlink(missing_ok=True)  # no stale manifest over half-replaced files
        files = {}
        for name in CORRUPTIONS:
            corrupted, severities = corrupt_with_severities(images, name, severity, seed)
            digest = _atomic_write(folder / f"{name}.npz", lambda handle, c=corrupted, s=severities:
                                   np.savez_compressed(handle, images=c, labels=labels, severities=s))
            files[name] = {"file": f"{name}.npz", "sha256": digest}
        manifest = {**key, "files": files,
                    "library_versions": {"numpy": np.__version__, "scipy": scipy.__version__}}
        text = json.dumps(manifest, indent=2) + "\n"
        _atomic_write(folder / MANIFEST_NAME, lambda handle: handle.write(text.encode("utf-8")))
    return folder


@dataclass(frozen=True)
class CorruptedSplit:
    """One corruption's split as written: images, labels and the severity each image got."""

    name: str
    images: np.ndarray  # uint8 [N, 28, 28]
    labels: np.ndarray  # [N]
    severities: np.ndarray  # uint8 [N], 1..5


def read_corrupted_split(folder: str | Path, name: str) -> CorruptedSplit:
    """One corruption written by :func:`write_corrupted`, checked against the manifest, with its severities.

    Loads without pickle; every problem (unknown name, missing or damaged file) is one ``FmnistError``.
    """
    check_name(name)
    folder = Path(folder)
    manifest = _load_manifest(folder)
    path = folder / f"{name}.npz"  # never a path taken from the manifest
    entry = manifest["files"].get(name)
    if not isinstance(entry, dict):
        raise FmnistError(f"{folder / MANIFEST_NAME}: lists no file for {name!r}; rerun write_corrupted on this folder.")
    if not path.is_file():
        raise FmnistError(f"{path}: file is missing; rerun write_corrupted on {folder} to regenerate it.")
    if _file_sha256(path) != entry.get("sha256"):
        raise FmnistError(f"{path}: contents do not match {MANIFEST_NAME} (damaged, or from another run); "
                          f"rerun write_corrupted on {folder} to regenerate it.")
    try:
        with np.load(path, allow_pickle=False) as data:
            images, labels = data["images"], data["labels"]
            severities = data["severities"] if "severities" in data else np.zeros(len(labels), np.uint8)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise FmnistError(f"{path}: not a readable corrupted split ({exc}); "
                          f"rerun write_corrupted on {folder} to regenerate it.") from exc
    if (images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE
            or labels.ndim != 1 or len(labels) != len(images) or severities.shape != labels.shape):
        raise FmnistError(f"{path}: holds images {images.dtype} {list(images.shape)} and labels "
                          f"{list(labels.shape)}, not uint8 [N, 28, 28] and [N]; rerun write_corrupted on {folder}.")
    return CorruptedSplit(name, images, labels, severities)


def read_corrupted(folder: str | Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` of one corruption written by :func:`write_corrupted` (see :func:`read_corrupted_split`)."""
    split = read_corrupted_split(folder, name)
    return split.images, split.labels


# -- corrupted test sets by name -------------------------------------------------------------------
@dataclass(frozen=True)
class CorruptedSet:
    """A named corrupted test set: which dataset's test images it corrupts and its folder under a data root."""

    name: str
    base: str  # a dataset of fmnist.data.sources (its 10,000 test images are corrupted)
    folder: str  # <root>/<folder>/seed<seed>-<severity>/


CORRUPTED_SETS: dict[str, CorruptedSet] = {
    "fashion-c": CorruptedSet("fashion-c", "fashion", "FashionMNIST-C"),
}
"""Corrupted test sets by name (``--dataset fashion-c``).

Kept apart from :data:`fmnist.data.sources.DATASETS`: those are IDX train/test pairs that can be
trained on, while a corrupted set is a test set only, generated from another dataset's test split.
"""


def corrupted_set(name: str) -> CorruptedSet:
    """Look up a corrupted set by name, with a clear error listing the valid ones."""
    try:
        return CORRUPTED_SETS[name]
    except (KeyError, TypeError):
        raise FmnistError(f"Unknown corrupted test set {name!r}; choose one of: {', '.join(CORRUPTED_SETS)}.") from None


def corrupted_dir(name: str = "fashion-c", data_dir: str | Path | None = None, *, seed: int = 0,
                  severity: Severity = "random") -> Path:
    """Where a corrupted set lives: ``<root>/<folder>/seed<seed>-<severity>``.

    ``<root>`` is ``data_dir``, else ``$FMNIST_DATA_DIR``, else ``./data``: the writable data roots
    of :mod:`fmnist.data.sources` (the system copy of Fashion-MNIST is read-only, so never there).
    """
    info = corrupted_set(name)
    severity, seed = check_severity(severity), check_seed(seed)
    root = Path(data_dir) if data_dir is not None else Path(os.environ.get(ENV_VAR) or "data")
    return root / info.folder / f"seed{seed}-{severity}"


def ensure_corrupted(name: str = "fashion-c", data_dir: str | Path | None = None, *, seed: int = 0,
                     severity: Severity = "random") -> Path:
    """Generate ``name`` from its base dataset's test split once (seconds) and return its folder.

    Later calls find the folder's manifest matching (same seed, severity, source images and code
    version) and reuse the files; see :func:`write_corrupted`.
    """
    folder = corrupted_dir(name, data_dir, seed=seed, severity=severity)
    data = load_dataset(corrupted_set(name).base, data_dir)
    return write_corrupted(folder, data.test_images.numpy(), data.test_labels.numpy(), seed=seed, severity=severity)
