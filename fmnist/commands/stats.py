"""``fmnist stats`` (= ``python evaluate.py stats``): image counts, class balance and pixel statistics per split."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from fmnist.data.sources import DATASETS, SPLIT_FILES, load_dataset
from fmnist.data.stats import split_stats
from fmnist.errors import DataNotFoundError, FmnistError


def run(args: argparse.Namespace) -> int:
    if args.dataset != "all" and args.dataset not in DATASETS:
        raise FmnistError(f"--dataset {args.dataset!r} is not a dataset; choose one of: {', '.join(DATASETS)}, all.")
    names = list(DATASETS) if args.dataset == "all" else [args.dataset]
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
