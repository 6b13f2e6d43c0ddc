"""Stratified train/validation splits and K folds over the training images.

Stratified sampling, never "the first N images": a loader that took the last 10% once
produced a validation set of one class. The test set is never touched here.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

from fmnist.errors import FmnistError


def _as_numpy(labels) -> np.ndarray:
    return labels.numpy() if hasattr(labels, "numpy") else np.asarray(labels)


def stratified_split(labels, val_fraction: float = 0.15, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """(train_indices, val_indices), sorted; identical for the same labels, fraction and seed."""
    if not 0.0 < val_fraction < 1.0:
        raise FmnistError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}.")
    labels = _as_numpy(labels)
    train_idx, val_idx = train_test_split(
        np.arange(len(labels)), test_size=val_fraction, stratify=labels, random_state=seed
    )
    return np.sort(train_idx), np.sort(val_idx)


def check_fold_count(labels, n_folds: int) -> None:
    """Every class must have at least ``n_folds`` images, so that each stratified fold holds some of each."""
    counts = np.bincount(_as_numpy(labels).astype(np.int64))
    present = counts[counts > 0]
    smallest = int(present.min()) if present.size else 0
    if n_folds > smallest:
        raise FmnistError(f"--folds {n_folds} needs at least {n_folds} training images of every class, but the "
                          f"smallest class has {smallest} (of {int(counts.sum())} images); use --folds 2 to "
                          f"{max(2, smallest)}.")


def stratified_fold(labels, n_folds: int, fold: int, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """(train_indices, val_indices) of fold ``fold`` of ``n_folds`` shuffled stratified folds."""
    if n_folds < 2:
        raise FmnistError(f"n_folds must be at least 2, got {n_folds}.")
    if not 0 <= fold < n_folds:
        raise FmnistError(f"fold must be in 0..{n_folds - 1} for n_folds={n_folds}, got {fold}.")
    labels = _as_numpy(labels)
    check_fold_count(labels, n_folds)
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    train_idx, val_idx = list(splitter.split(np.zeros(len(labels)), labels))[fold]
    return np.sort(train_idx), np.sort(val_idx)


def stratified_subset(indices: np.ndarray, labels, size: int, seed: int = 42) -> np.ndarray:
    """A class-balanced subset of ``indices`` of about ``size`` elements (for quick runs)."""
    if size >= len(indices):
        return indices
    labels = _as_numpy(labels)
    keep, _ = train_test_split(indices, train_size=size, stratify=labels[indices], random_state=seed)
    return np.sort(keep)
