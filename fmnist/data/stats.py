"""``python evaluate.py stats``: image counts, class balance and pixel statistics per split."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import torch

from fmnist.data.sources import DATASETS, SPLIT_FILES, load_dataset
from fmnist.errors import DataNotFoundError


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


def cli_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="evaluate.py stats", description="Per-split image counts, class counts and pixel statistics (0-255 scale).")
    parser.add_argument("--dataset", choices=[*DATASETS, "all"], default="all")
    parser.add_argument("--data-dir", default=None, help="root holding FashionMNIST/raw and MNIST/raw")
    args = parser.parse_args(argv)
    names = list(DATASETS) if args.dataset == "all" else [args.dataset]
    from rich.console import Console
    from rich.table import Table

    console = Console()
    shown = 0
    for name in names:
        try:
            rows = [split_stats(name, split, args.data_dir) for split in SPLIT_FILES]
        except DataNotFoundError as exc:
            if args.dataset != "all":
                raise
            console.print(f"[yellow]{name}: skipped[/yellow] ({exc})")
            continue
        data = load_dataset(name, args.data_dir)
        table = Table(title=f"{name} ({data.source})")
        for column in ("split", "images", "mean", "median", "std", "per-class counts"):
            table.add_column(column, justify="right" if column != "per-class counts" else "left")
        for row in rows:
            counts = (f"{row.class_counts[0]} each" if len(set(row.class_counts)) == 1
                      else " ".join(str(n) for n in row.class_counts))
            table.add_row(row.split, str(row.images), f"{row.mean:.2f}", f"{row.median:g}", f"{row.std:.2f}", counts)
        console.print(table)
        console.print("classes: " + ", ".join(f"{i} {c}" for i, c in enumerate(data.class_names)))
        shown += 1
    return 0 if shown else 1
