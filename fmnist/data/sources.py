"""Where the datasets come from, and loading them into memory once.

Search order for each dataset (first folder that holds all four files wins):
explicit ``data_dir`` -> ``$FMNIST_DATA_DIR`` -> ``./data`` -> the system copy installed by
Debian's ``dataset-fashion-mnist`` package (Fashion-MNIST only) -> torchvision's downloader
into ``data_dir`` (or ``./data``). Layout under a root is torchvision's:
``<root>/FashionMNIST/raw/`` and ``<root>/MNIST/raw/``.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fmnist.data.idx import read_pair
from fmnist.errors import DataNotFoundError, FmnistError

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


def _complete(folder: Path) -> bool:
    return all(_file_in(folder, stem) for pair in SPLIT_FILES.values() for stem in pair)


def candidate_dirs(dataset: str, data_dir: str | Path | None = None) -> list[Path]:
    """Raw-file folders to try for ``dataset``, in search order."""
    info = dataset_info(dataset)
    roots: list[Path] = []
    if data_dir is not None:
        roots.append(Path(data_dir))
    if os.environ.get(ENV_VAR):
        roots.append(Path(os.environ[ENV_VAR]))
    roots.append(Path("data"))
    dirs = [root / info.folder / "raw" for root in roots]
    if info.system_dir is not None:
        dirs.append(info.system_dir)
    return dirs


def find_raw_dir(dataset: str, data_dir: str | Path | None = None, download: bool | None = None) -> Path:
    """Return the folder holding ``dataset``'s four IDX files, downloading as a last resort."""
    for folder in candidate_dirs(dataset, data_dir):
        if _complete(folder):
            return folder
    if download is None:
        download = os.environ.get(NO_DOWNLOAD_ENV_VAR, "") in ("", "0")
    root = Path(data_dir) if data_dir is not None else Path("data")
    if download and dataset_info(dataset).torchvision_class:
        with contextlib.suppress(Exception):
            _download(dataset, root)
            if _complete(root / dataset_info(dataset).folder / "raw"):
                return root / dataset_info(dataset).folder / "raw"
    raise DataNotFoundError(_not_found_message(dataset, data_dir, download))


def _download(dataset: str, root: Path) -> None:
    import torchvision.datasets as tvd

    cls = getattr(tvd, dataset_info(dataset).torchvision_class)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        cls(str(root), train=True, download=True)


def _not_found_message(dataset: str, data_dir: str | Path | None, tried_download: bool) -> str:
    info = dataset_info(dataset)
    searched = ", ".join(str(d) for d in candidate_dirs(dataset, data_dir))
    files = ", ".join(stem + "[.gz]" for pair in SPLIT_FILES.values() for stem in pair)
    hint = (
        f"install Debian's package with `apt-get update && apt-get install -y {info.system_package}` "
        f"(puts the files in {info.system_dir}), or "
        if info.system_package else ""
    )
    how = "the download failed (are you offline?)" if tried_download else f"downloading is off (${NO_DOWNLOAD_ENV_VAR})"
    return (
        f"{info.folder} not found and {how}. Put the four IDX files ({files}) in "
        f"<root>/{info.folder}/raw/ and point ${ENV_VAR} (or --data.data_dir) at <root>; or {hint}"
        f"run once with network access to let torchvision download them into ./data. Searched: {searched}."
    )


@dataclass(frozen=True)
class DatasetArrays:
    """A whole dataset in memory as uint8/int64 tensors (Fashion-MNIST: 55 MB)."""

    name: str
    train_images: torch.Tensor  # uint8 [60000, 28, 28]
    train_labels: torch.Tensor  # int64 [60000]
    test_images: torch.Tensor  # uint8 [10000, 28, 28]
    test_labels: torch.Tensor  # int64 [10000]
    source: Path

    @property
    def class_names(self) -> tuple[str, ...]:
        return dataset_info(self.name).class_names

    def split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in SPLIT_FILES:
            raise FmnistError(f"Unknown split {split!r}; choose one of: {', '.join(SPLIT_FILES)}.")
        return (self.train_images, self.train_labels) if split == "train" else (self.test_images, self.test_labels)


@functools.lru_cache(maxsize=8)
def _load_folder(name: str, folder: Path) -> DatasetArrays:
    arrays: dict[str, np.ndarray] = {}
    for split, (images_stem, labels_stem) in SPLIT_FILES.items():
        images, labels = read_pair(_file_in(folder, images_stem), _file_in(folder, labels_stem))
        arrays[f"{split}_images"] = torch.from_numpy(images.copy())
        arrays[f"{split}_labels"] = torch.from_numpy(labels.astype(np.int64))
    return DatasetArrays(name=name, source=folder, **arrays)


def load_dataset(dataset: str = "fashion", data_dir: str | Path | None = None, download: bool | None = None) -> DatasetArrays:
    """Load ``dataset`` into memory (cached per folder, so repeated calls are free)."""
    folder = find_raw_dir(dataset, data_dir, download)
    return _load_folder(dataset, folder.resolve())
