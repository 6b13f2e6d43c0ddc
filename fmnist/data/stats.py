"""``python evaluate.py stats``: image counts, class balance and pixel statistics per split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fmnist.data.sources import load_dataset


@dataclass(frozen=True)
class SplitStats:
    dataset: str
    split: str
    images: int
    class_counts: list[int]
    mean: float  # 0-255 scale
    median: float
    std: float


def pixel_stats(images: torch.Tensor) -> tuple[float, float, float]:
    """Mean, median and (population) std of all pixels on the 0-255 scale, exact, via a 256-bin histogram."""
    hist = np.bincount(images.numpy().ravel(), minlength=256).astype(np.float64)
    values = np.arange(256, dtype=np.float64)
    total = hist.sum()
    mean = float((hist * values).sum() / total)
    std = float(np.sqrt((hist * (values - mean) ** 2).sum() / total))
    cumulative = np.cumsum(hist)
    lower = int(np.searchsorted(cumulative, (total - 1) / 2, side="right"))
    upper = int(np.searchsorted(cumulative, total / 2, side="right"))
    return mean, (lower + upper) / 2, std


def split_stats(dataset: str, split: str, data_dir: str | None = None) -> SplitStats:
    data = load_dataset(dataset, data_dir)
    images, labels = data.split(split)
    mean, median, std = pixel_stats(images)
    counts = torch.bincount(labels, minlength=len(data.class_names)).tolist()
    return SplitStats(dataset, split, len(labels), counts, mean, median, std)
