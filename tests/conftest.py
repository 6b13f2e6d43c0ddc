"""Shared test fixtures: no network, tiny synthetic datasets, and the real data where it is present.

What every test file can use:

* ``FMNIST_NO_DOWNLOAD=1`` is set for the whole session (autouse), so no test -- nor any
  subprocess a test starts -- ever tries to download anything.
* :func:`write_synthetic_dataset` writes a tiny, learnable dataset in torchvision's layout
  (``<root>/FashionMNIST/raw/`` or ``<root>/MNIST/raw/``); the session fixture
  ``synthetic_data_dir`` holds both (600 train / 100 test images each) and returns the
  root as a ``str``, ready for ``data_dir=`` or ``--data.data_dir``.
* :func:`real_data_dir` returns a root holding the *real* datasets asked for (Fashion-MNIST
  through the search order of :mod:`fmnist.data.sources`, i.e. ``$FMNIST_DATA_DIR``,
  ``./data`` or Debian's ``/usr/share/datasets/fashion-mnist``; MNIST through
  ``$FMNIST_DATA_DIR``, e.g. ``FMNIST_DATA_DIR=../shared/data``) or skips the test with
  the reason. The fixtures ``real_fashion_root``, ``real_mnist_root`` and
  ``real_data_root`` (both) wrap it.

On CI (``CI=true``, which ``.ci/run`` sets) nothing may quietly stay untested: the data, PostgreSQL and
Chromium are provided there, so a test that would skip for lack of one of them *fails* instead, saying so
(:func:`pytest_runtest_makereport`). Only the skips listed in :data:`SKIPS_ALLOWED_ON_CI` (hardware CI does
not have) stay skips. :func:`skip_or_fail` is the same rule for code that decides by itself.

Helpers are importable from test modules with ``from conftest import write_synthetic_dataset``
(pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import atexit
import functools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from fmnist.data.idx import write_idx
from fmnist.data.sources import NO_DOWNLOAD_ENV_VAR, SPLIT_FILES, dataset_info, find_raw_dir, load_dataset
from fmnist.errors import DataNotFoundError
from fmnist.training.module import Classifier

SYNTHETIC_TRAIN, SYNTHETIC_TEST = 600, 100

# -- two workers on two cores ----------------------------------------------------------------------------
# pytest-xdist runs the suite in two processes (pyproject's addopts): each of them, and every training process a
# test starts, computes on one thread. Two processes of two OpenMP threads each on two cores stall each other at
# every barrier (about ten times slower per step, measured on this project's machine).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

# The longest files first (their minutes on CI's quiet machine, stop 35's --durations): each worker takes whole
# files in collection order (--dist loadfile), so a long file collected last would leave the other worker idle
# while it runs (longest-first is the classic makespan heuristic). Files not named keep their order, after these.
LONGEST_FIRST = ("tests/test_accuracy_gate.py", "tests/training/test_soak.py", "tests/training/test_train_cli.py",
                 "tests/training/test_exact_resume.py", "tests/sweep/test_sweep.py", "tests/commands/test_commands.py",
                 "tests/training/test_stopping.py", "tests/test_untrusted_files.py", "tests/sweep/test_postgres.py",
                 "tests/reproduce/test_reproduce.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))  # stable: files stay whole


# -- CI runs everything ------------------------------------------------------------------------------
ON_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}
# Reasons a test may still skip on CI: hardware that CI machines do not have.
SKIPS_ALLOWED_ON_CI = (r"needs a CUDA GPU", r"needs \d+ GPUs")


def skip_or_fail(reason: str) -> NoReturn:
    """Skip with ``reason``; on CI fail with it, since CI provides what the test needs."""
    if ON_CI:
        pytest.fail(f"on CI this must run, but: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """On CI, a skip (other than for missing hardware) is a failure: green must mean "it ran and passed"."""
    outcome = yield
    report = outcome.get_result()
    if not (ON_CI and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if any(re.search(allowed, reason) for allowed in SKIPS_ALLOWED_ON_CI):
        return
    report.outcome = "failed"
    report.longrepr = f"skipped on CI, where everything must run ({item.nodeid}): {reason}"


# -- no network, ever ------------------------------------------------------------------------------
def pytest_configure(config: pytest.Config) -> None:
    """Downloads off from the start, so even collection-time code (parametrize, module imports) stays offline.

    And no warm server (``fmnist warm start``) the user may have running takes a test's commands: tests run the
    code of this checkout, in the test's own process (tests/commands/test_warm.py starts servers of its own).
    """
    os.environ[NO_DOWNLOAD_ENV_VAR] = "1"
    os.environ["FMNIST_WARM"] = "0"


@pytest.fixture(autouse=True, scope="session")
def _no_downloads():
    """Downloads off for the whole session (also inherited by subprocesses started from tests)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(NO_DOWNLOAD_ENV_VAR, "1")
        yield


# -- the repository is not a scratch folder ------------------------------------------------------------
REPO = Path(__file__).resolve().parents[1]
_CACHES = ("__pycache__", ".pytest_cache", ".ruff_cache", ".egg-info")


def repository_state() -> set[str] | None:
    """``git status`` of the checkout, ignored files included (Python's and the tools' caches left out), or None
    outside a git checkout (e.g. a source archive)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=REPO, capture_output=True, text=True,
                             timeout=120, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {line for line in out.splitlines() if not any(cache in line for cache in _CACHES)}


@pytest.fixture(autouse=True, scope="session")
def _repository_unchanged() -> Iterator[None]:
    """Tests write only to temporary folders: a run folder, report or download left in the checkout (for instance
    by a subprocess started with the repository as its working directory) fails the session, named."""
    before = repository_state()
    yield
    after = repository_state()
    if before is not None and after is not None and after != before:
        changed = sorted(after - before) + [f"(gone) {line}" for line in sorted(before - after)]
        pytest.fail("the test session changed the repository: " + "; ".join(changed), pytrace=False)


# -- synthetic data --------------------------------------------------------------------------------
def _class_region(label: int, dataset: str) -> tuple[slice, slice]:
    """(rows, cols) lit for a class: classes 0-4 are horizontal bands, 5-9 vertical ones.

    MNIST's synthetic digits use the bands in reverse order (class k looks like synthetic
    Fashion-MNIST's class 9 - k), so a model trained on one set scores ~0 on the other --
    a stand-in for the studies' "catastrophic domain shift".
    """
    k = 9 - label if dataset == "mnist" else label
    band = slice(2 + 5 * (k % 5), 2 + 5 * (k % 5) + 4)
    return (band, slice(2, 26)) if k < 5 else (slice(2, 26), band)


def synthetic_images(labels: np.ndarray, dataset: str = "fashion", seed: int = 0) -> np.ndarray:
    """uint8 ``[N, 28, 28]``: noisy background (0-60) plus a bright class-specific band (170-255)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 61, size=(len(labels), 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        rows, cols = _class_region(int(label), dataset)
        block = images[i, rows, cols]
        images[i, rows, cols] = rng.integers(170, 256, size=block.shape)
    return images


def balanced_labels(n: int, seed: int = 0, num_classes: int = 10) -> np.ndarray:
    """uint8 labels, every class ``n // num_classes`` or one more times, in random order."""
    rng = np.random.default_rng(seed)
    return rng.permutation(np.arange(n) % num_classes).astype(np.uint8)


def write_synthetic_dataset(root: str | Path, dataset: str = "fashion", n_train: int = SYNTHETIC_TRAIN,
                            n_test: int = SYNTHETIC_TEST, seed: int = 0, gz: bool = False) -> Path:
    """Write the four IDX files of a synthetic ``dataset`` under ``<root>/<Folder>/raw/``; return that folder.

    Labels are balanced (``n // 10`` per class, +-1) and shuffled; each class lights up its own
    band (see :func:`synthetic_images`), so a tiny CNN learns it in a few dozen steps. ``gz``
    writes ``.gz`` files, like Debian's copy. Deterministic for a given ``seed``.
    """
    raw = Path(root) / dataset_info(dataset).folder / "raw"
    suffix = ".gz" if gz else ""
    for offset, (split, n) in enumerate((("train", n_train), ("test", n_test))):
        labels = balanced_labels(n, seed=seed * 10 + offset)
        images = synthetic_images(labels, dataset, seed=seed * 10 + offset)
        images_stem, labels_stem = SPLIT_FILES[split]
        write_idx(raw / f"{images_stem}{suffix}", images)
        write_idx(raw / f"{labels_stem}{suffix}", labels)
    return raw


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Root with synthetic ``FashionMNIST/raw`` and ``MNIST/raw`` (600 train / 100 test each), as ``str``."""
    root = tmp_path_factory.mktemp("synthetic-data")
    write_synthetic_dataset(root, "fashion", seed=0)
    write_synthetic_dataset(root, "mnist", seed=1)
    return str(root)


# -- real data -------------------------------------------------------------------------------------
def find_real_raw_dir(dataset: str) -> Path | None:
    """The folder holding the real ``dataset`` per the library's search order, or None (never downloads)."""
    try:
        return find_raw_dir(dataset, download=False)
    except DataNotFoundError:
        return None


_combined_roots: dict[tuple[str, ...], Path] = {}


def _root_of(raw: Path, dataset: str) -> Path | None:
    """``<root>`` when ``raw`` is ``<root>/<Folder>/raw`` (torchvision's layout), else None."""
    folder = dataset_info(dataset).folder
    if raw.name == "raw" and raw.parent.name == folder:
        return raw.parent.parent
    return None


def real_data_dir(*datasets: str) -> str:
    """A root (for ``data_dir=`` / ``--data.data_dir``) holding the real ``datasets`` (default Fashion-MNIST).

    Skips the calling test, with the reason, when one of them is not on disk. When they are
    not all under one torchvision-style root (Debian's Fashion-MNIST lives in a flat folder),
    a temporary root of symlinks to the real raw folders is made once per session.
    """
    datasets = datasets or ("fashion",)
    raws: dict[str, Path] = {}
    for name in datasets:
        raw = find_real_raw_dir(name)
        if raw is None:
            hint = ("install Debian's dataset-fashion-mnist or set FMNIST_DATA_DIR" if name == "fashion"
                    else "set FMNIST_DATA_DIR to a root holding MNIST/raw, e.g. ../shared/data")
            skip_or_fail(f"real {dataset_info(name).folder} not found ({hint})")
        raws[name] = raw.resolve()
    roots = {_root_of(raw, name) for name, raw in raws.items()}
    if len(roots) == 1 and None not in roots:
        return str(roots.pop())
    key = tuple(sorted(raws.items()))
    if key not in _combined_roots:
        root = Path(tempfile.mkdtemp(prefix="fmnist-real-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        for name, raw in raws.items():
            link = root / dataset_info(name).folder / "raw"
            link.parent.mkdir(parents=True)
            os.symlink(raw, link, target_is_directory=True)
        _combined_roots[key] = root
    return str(_combined_roots[key])


def real_photos_dir() -> Path:
    """``$FMNIST_DATA_DIR/wild``, the 215 labelled development photos (docs/photos.md), or skip (fail on CI)."""
    root = os.environ.get("FMNIST_DATA_DIR")
    folder = Path(root) / "wild" if root else None
    if folder is None or not (folder / "labels.csv").is_file():
        skip_or_fail("the real photos are not here (set FMNIST_DATA_DIR to a root holding wild/labels.csv, "
                     "e.g. ../shared/data; docs/data.md)")
    return folder


@pytest.fixture(scope="session")
def real_fashion_root() -> str:
    """Root with real Fashion-MNIST (skips when absent)."""
    return real_data_dir("fashion")


@pytest.fixture(scope="session")
def real_mnist_root() -> str:
    """Root with real MNIST (skips when absent; set FMNIST_DATA_DIR)."""
    return real_data_dir("mnist")


@pytest.fixture(scope="session")
def real_data_root() -> str:
    """Root with both real Fashion-MNIST and MNIST (skips when either is absent)."""
    return real_data_dir("fashion", "mnist")


# -- one tiny trained checkpoint per session (Grad-CAM, photo and IIIF tests) ---------------------------
def train_tiny_checkpoint(path: Path, data_dir: str, model_name: str = "cnn") -> Path:
    """A tiny trained checkpoint that ``load_trained`` reads (a few steps on synthetic Fashion-MNIST)."""
    images, labels = load_dataset("fashion", data_dir).split("train")
    loader = DataLoader(TensorDataset(images[:256].float().div(255).unsqueeze(1), labels[:256]), batch_size=64)
    torch.manual_seed(0)
    module = Classifier(model_name)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_checkpointing=False,
                        enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.fit(module, loader)
    trainer.save_checkpoint(path)
    return path


@functools.cache
def cached_checkpoint(data_dir: str, model_name: str = "cnn") -> Path:
    """One trained checkpoint per session, shared by the Grad-CAM, photo and IIIF tests; kept beside the synthetic
    data, in pytest's own temporary folder (pytest prunes it; an ``atexit`` clean-up never ran in xdist workers
    or forked children, which left a folder in /tmp per worker)."""
    folder = Path(data_dir).parent / "cached-checkpoints"
    folder.mkdir(exist_ok=True)
    return train_tiny_checkpoint(folder / f"{model_name}.ckpt", data_dir, model_name)


@pytest.fixture
def cnn_checkpoint(synthetic_data_dir: str) -> Path:
    return cached_checkpoint(synthetic_data_dir)
