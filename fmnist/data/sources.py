"""Where the datasets come from, and loading them into memory once.

Places searched for each dataset, in order (torchvision's layout under a root:
``<root>/FashionMNIST/raw/``, ``<root>/MNIST/raw/``):

1. an explicit ``data_dir``: then the *only* root searched. It must exist; if it has no
   ``<Folder>/raw/`` the dataset is downloaded into it (when downloads are on), never looked for
   elsewhere: the user said where the data is.
2. ``$FMNIST_DATA_DIR``: it must exist; a root with no folder for this dataset at all is passed
   over (one variable can serve MNIST while Debian's copy serves Fashion-MNIST) and the run's
   ``metrics.json`` says so.
3. ``./data``, then 4. the system copy of Debian's ``dataset-fashion-mnist`` (Fashion-MNIST only).
5. torchvision's downloader into ``./data``.

A place that holds a folder for the dataset must hold all four files: an incomplete folder is an
error naming the missing files, never a reason to quietly use another copy. Every load records
where its files came from (:class:`DataSource`: folder, why that one, what was passed over, and
each file's size and SHA-256), which the training run writes into ``metrics.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmnist.data.idx import IMAGE_SHAPE, read_pair
from fmnist.errors import DataNotFoundError, FmnistError, IDXError

ENV_VAR = "FMNIST_DATA_DIR"
NO_DOWNLOAD_ENV_VAR = "FMNIST_NO_DOWNLOAD"
SYSTEM_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_PACKAGE = "dataset-fashion-mnist"

FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
DIGIT_CLASSES = tuple(str(d) for d in range(10))

SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset of 28x28 grayscale IDX files: where its files live and what its classes are called."""

    name: str
    folder: str  # folder name under a data root (torchvision's layout: <root>/<folder>/raw/)
    class_names: tuple[str, ...]
    torchvision_class: str | None = None  # torchvision.datasets class that can download it, if any
    system_dir: Path | None = None  # a system-wide copy (a Debian package), searched last
    system_package: str | None = None  # the package that installs system_dir


DATASETS: dict[str, DatasetInfo] = {}


def register_dataset(info: DatasetInfo) -> DatasetInfo:
    """Add a dataset: from then on the data module, the evaluator and ``--dataset`` know it by name."""
    if info.name in DATASETS:
        raise FmnistError(f"a dataset named {info.name!r} is registered already; pick another name.")
    DATASETS[info.name] = info
    return info


def unregister_dataset(name: str) -> None:
    """Remove a registered dataset (tests register throwaway ones)."""
    DATASETS.pop(name, None)


register_dataset(DatasetInfo("fashion", "FashionMNIST", FASHION_CLASSES, "FashionMNIST", SYSTEM_FASHION_DIR,
                             DEBIAN_PACKAGE))
register_dataset(DatasetInfo("mnist", "MNIST", DIGIT_CLASSES, "MNIST"))


def dataset_info(dataset: str) -> DatasetInfo:
    """Look up a dataset by name, with a clear error listing the valid ones."""
    try:
        return DATASETS[dataset]
    except KeyError:
        raise FmnistError(f"Unknown dataset {dataset!r}; choose one of: {', '.join(DATASETS)}.") from None


def _file_in(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def missing_files(folder: Path) -> list[str]:
    """The IDX files (by plain name; a ``.gz`` copy counts) that ``folder`` lacks."""
    return [stem for pair in SPLIT_FILES.values() for stem in pair if _file_in(folder, stem) is None]


def _complete(folder: Path) -> bool:
    return not missing_files(folder)


def downloads_enabled() -> bool:
    """False when ``$FMNIST_NO_DOWNLOAD`` is set to anything but ``0`` (tests and CI set it)."""
    return os.environ.get(NO_DOWNLOAD_ENV_VAR, "") in ("", "0")


@dataclass(frozen=True)
class _Place:
    """One place in the search: the raw-file folder, the folder whose existence claims the dataset, and why."""

    raw: Path  # where the four files must be
    claim: Path  # if this exists, the place holds the dataset and must be complete
    via: str  # how the user put it there, for messages and provenance
    root: Path | None = None  # data_dir / $FMNIST_DATA_DIR: must exist


def _places(info: DatasetInfo, data_dir: str | Path | None) -> list[_Place]:
    if data_dir is not None:
        root = Path(data_dir)
        return [_Place(root / info.folder / "raw", root / info.folder, "data_dir", root)]
    places = []
    if os.environ.get(ENV_VAR):
        root = Path(os.environ[ENV_VAR])
        places.append(_Place(root / info.folder / "raw", root / info.folder, f"${ENV_VAR}", root))
    places.append(_Place(Path("data") / info.folder / "raw", Path("data") / info.folder, "./data"))
    if info.system_dir is not None:
        via = f"the system copy of {info.system_package}" if info.system_package else "the system copy"
        places.append(_Place(info.system_dir, info.system_dir, via))
    return places


def _given(data_dir: str | Path | None) -> str | Path | None:
    return None if data_dir is None or str(data_dir) == "" else data_dir


def candidate_dirs(dataset: str, data_dir: str | Path | None = None) -> list[Path]:
    """Raw-file folders searched for ``dataset``, in order (only ``data_dir``'s when one is given)."""
    return [place.raw for place in _places(dataset_info(dataset), _given(data_dir))]


@dataclass(frozen=True)
class Located:
    """The folder a dataset was found in, how, and the places passed over on the way."""

    folder: Path
    via: str
    passed_over: tuple[str, ...] = ()


def locate(dataset: str, data_dir: str | Path | None = None, download: bool | None = None) -> Located:
    """Find ``dataset``'s four IDX files by the search order above, downloading as a last resort.

    Raises :class:`DataNotFoundError` with one sentence for: a ``data_dir`` or ``$FMNIST_DATA_DIR``
    that does not exist, a dataset folder lacking files (named), and nothing found or downloaded.
    """
    info = dataset_info(dataset)
    data_dir = _given(data_dir)
    download = downloads_enabled() if download is None else download
    passed_over: list[str] = []
    for place in _places(info, data_dir):
        if place.root is not None and not place.root.is_dir():
            raise DataNotFoundError(_missing_root_message(info, place))
        if place.claim.exists():
            missing = missing_files(place.raw)
            if missing:
                raise DataNotFoundError(_incomplete_message(info, place, missing))
            return Located(place.raw, place.via, tuple(passed_over))
        passed_over.append(f"{_shown(place.claim)} ({place.via}): no such folder")
    target = Path(data_dir) if data_dir is not None else Path("data")
    failure = f"downloading is off (${NO_DOWNLOAD_ENV_VAR})"
    if download and info.torchvision_class is None:
        failure = "it has no downloader"
    elif download:
        failure = _download_failure(dataset, target)
        raw = target / info.folder / "raw"
        if failure is None and _complete(raw):
            return Located(raw, f"downloaded by torchvision into {_shown(target)}", tuple(passed_over))
        failure = failure or f"the download into {_shown(target)} left it incomplete"
    raise DataNotFoundError(_not_found_message(info, data_dir, failure))


def find_raw_dir(dataset: str, data_dir: str | Path | None = None, download: bool | None = None) -> Path:
    """Return the folder holding ``dataset``'s four IDX files (see :func:`locate`)."""
    return locate(dataset, data_dir, download).folder


def _shown(path: Path) -> str:
    """Absolute form of a path for messages (``data`` alone says nothing about where)."""
    return str(path if path.is_absolute() else Path.cwd() / path)


def _files_hint() -> str:
    return ", ".join(stem + "[.gz]" for pair in SPLIT_FILES.values() for stem in pair)


def _missing_root_message(info: DatasetInfo, place: _Place) -> str:
    if place.via == "data_dir":
        return (f"data_dir {_shown(place.root)} does not exist (or is not a folder); pass the root that holds "
                f"{info.folder}/raw/, or leave --data.data_dir unset to use the search order (docs/data.md).")
    return (f"${ENV_VAR} is {place.root}, which does not exist (or is not a folder); point it at the root "
            f"that holds {info.folder}/raw/, or unset it.")


def _incomplete_message(info: DatasetInfo, place: _Place, missing: list[str]) -> str:
    names = ", ".join(f"{stem}[.gz]" for stem in missing)
    if place.claim == place.raw == info.system_dir and info.system_package:
        fix = f"reinstall it with `apt-get install --reinstall -y {info.system_package}`"
    else:
        fix = (f"add {'it' if len(missing) == 1 else 'them'} there, or remove {_shown(place.claim)} "
               f"so that {'the search goes on past it' if place.via != 'data_dir' else 'it can be downloaded'}")
    return (f"{info.folder} in {_shown(place.raw)} (found via {place.via}) is incomplete: "
            f"{len(missing)} of 4 files missing ({names}); {fix}.")


def _not_found_message(info: DatasetInfo, data_dir: str | Path | None, failure: str) -> str:
    if data_dir is not None:
        root = Path(data_dir)
        flat = (" It holds the IDX files directly: data_dir is the root above "
                f"{info.folder}/raw/, so move them into {_shown(root / info.folder / 'raw')}."
                if _complete(root) else "")
        system = (f" Debian's copy in {info.system_dir} is used when data_dir is unset."
                  if info.system_dir is not None and info.system_dir.is_dir() else "")
        return (f"data_dir {_shown(root)} has no {info.folder}/raw/ folder and {failure}; put the four IDX "
                f"files ({_files_hint()}) in {_shown(root / info.folder / 'raw')}, or leave --data.data_dir "
                f"unset to use the search order.{flat}{system}")
    searched = ", ".join(_shown(d) for d in candidate_dirs(info.name))
    hint = (
        f"install Debian's package with `apt-get update && apt-get install -y {info.system_package}` "
        f"(puts the files in {info.system_dir}), or "
        if info.system_package else ""
    )
    return (
        f"{info.folder} not found and {failure}. Put the four IDX files ({_files_hint()}) in "
        f"<root>/{info.folder}/raw/ and point ${ENV_VAR} (or --data.data_dir) at <root>; or {hint}"
        f"run once with network access to let torchvision download them into ./data. Searched: {searched}."
    )


def _download(dataset: str, root: Path) -> None:
    import torchvision.datasets as tvd

    cls = getattr(tvd, dataset_info(dataset).torchvision_class)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        cls(str(root), train=True, download=True)


_WRITE_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)


def _download_failure(dataset: str, root: Path) -> str | None:
    """Download ``dataset`` into ``root``; None on success, else what went wrong, in words.

    Folders this attempt created are removed again when it fails, so a failed download does not
    leave an empty dataset folder that the next search would report as incomplete.
    """
    folder = root / dataset_info(dataset).folder
    created = [p for p in (root, folder, folder / "raw") if not p.exists()]
    try:
        _download(dataset, root)
        return None
    except OSError as exc:
        where = exc.filename or root
        if isinstance(exc, PermissionError) or exc.errno in _WRITE_ERRNOS:
            return f"it cannot be downloaded there: {(exc.strerror or 'permission denied').lower()} on {where}"
        if exc.filename and exc.strerror:
            return f"the download into {_shown(root)} failed: {exc.strerror.lower()} on {where}"
        return f"the download failed (are you offline? {exc})"
    except RuntimeError as exc:  # torchvision: every mirror failed; the reasons follow its first line
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = lines[-1] if len(lines) > 1 else (lines[0] if lines else "no reason given")
        return f"the download failed (are you offline? {reason})"
    except Exception as exc:  # noqa: BLE001 - any other downloader failure is reported, not hidden
        return f"the download failed ({type(exc).__name__}: {exc})"
    finally:
        for path in reversed(created):
            if path.is_dir():
                with contextlib.suppress(OSError):
                    path.rmdir()  # only if still empty: a partial download stays for the message to name


# -- provenance ------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, computed once per process per (path, mtime, size)."""
    path = Path(path).resolve()
    stat = path.stat()
    return _sha256(str(path), stat.st_mtime_ns, stat.st_size)


@dataclass(frozen=True)
class DataFile:
    """One IDX file a dataset was loaded from."""

    role: str  # train_images, train_labels, test_images, test_labels
    path: Path
    size: int
    sha256: str


@dataclass(frozen=True)
class DataSource:
    """Which files a dataset was loaded from and why those: written into every run's ``metrics.json``."""

    dataset: str
    folder: Path
    via: str
    passed_over: tuple[str, ...]
    files: tuple[DataFile, ...]

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON types, for ``metrics.json``."""
        return {
            "dataset": self.dataset,
            "folder": str(self.folder),
            "via": self.via,
            "passed_over": list(self.passed_over),
            "files": {f.role: {"path": str(f.path), "bytes": f.size, "sha256": f.sha256} for f in self.files},
        }


@dataclass(frozen=True)
class DatasetArrays:
    """A whole dataset in memory as uint8/int64 tensors (Fashion-MNIST: 55 MB)."""

    name: str
    train_images: torch.Tensor  # uint8 [60000, 28, 28]
    train_labels: torch.Tensor  # int64 [60000]
    test_images: torch.Tensor  # uint8 [10000, 28, 28]
    test_labels: torch.Tensor  # int64 [10000]
    source: Path
    provenance: DataSource | None = None  # set by load_dataset: which files, found how, their sha256

    @property
    def class_names(self) -> tuple[str, ...]:
        return dataset_info(self.name).class_names

    def split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in SPLIT_FILES:
            raise FmnistError(f"Unknown split {split!r}; choose one of: {', '.join(SPLIT_FILES)}.")
        return (self.train_images, self.train_labels) if split == "train" else (self.test_images, self.test_labels)


def _split_files(folder: Path) -> dict[str, Path]:
    files = {}
    for split, (images_stem, labels_stem) in SPLIT_FILES.items():
        files[f"{split}_images"] = _file_in(folder, images_stem)
        files[f"{split}_labels"] = _file_in(folder, labels_stem)
    return files


@functools.lru_cache(maxsize=8)
def _load_folder(name: str, folder: Path, signature: tuple[tuple[str, int, int], ...]) -> DatasetArrays:
    """Read and check the four files; cached by their (path, mtime, size), so a replaced file is re-read."""
    num_classes = len(dataset_info(name).class_names)
    files = _split_files(folder)
    arrays: dict[str, torch.Tensor] = {}
    for split in SPLIT_FILES:
        images_path, labels_path = files[f"{split}_images"], files[f"{split}_labels"]
        images, labels = read_pair(images_path, labels_path, num_classes, IMAGE_SHAPE)
        if len(labels) == 0:
            raise IDXError(f"{images_path} holds no images; the {split} split cannot be empty, re-download the file.")
        arrays[f"{split}_images"] = torch.from_numpy(images.copy())
        arrays[f"{split}_labels"] = torch.from_numpy(labels.astype(np.int64))
    return DatasetArrays(name=name, source=folder, **arrays)


def load_dataset(dataset: str = "fashion", data_dir: str | Path | None = None, download: bool | None = None) -> DatasetArrays:
    """Load ``dataset`` into memory (cached per folder, so repeated calls are free), with its provenance."""
    found = locate(dataset, data_dir, download)
    folder = found.folder.resolve()
    files = _split_files(folder)
    stats = {role: path.stat() for role, path in files.items()}
    signature = tuple((str(path), stats[role].st_mtime_ns, stats[role].st_size) for role, path in files.items())
    data = _load_folder(dataset, folder, signature)
    provenance = DataSource(dataset, folder, found.via, found.passed_over, tuple(
        DataFile(role, path, stats[role].st_size, _sha256(str(path), stats[role].st_mtime_ns, stats[role].st_size))
        for role, path in files.items()))
    return dataclasses.replace(data, provenance=provenance)
