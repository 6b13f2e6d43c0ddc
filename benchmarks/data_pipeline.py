#!/usr/bin/env python
"""How fast is our data pipeline? One augmented training epoch of Fashion-MNIST, batch 64.

Compares, for the 51,000 training images of the default stratified split:

(a) ours: ``ImageDataModule(augment=AugmentSettings(enabled=True))`` -- uint8 tensors in memory, whole-batch
    indexing, then ``on_after_batch_transfer`` with a trainer whose ``training`` is True
    (to float, batch-level rotation/zoom/contrast with per-sample parameters, input transform);
(b) the conventional pipeline: ``torchvision.datasets.FashionMNIST`` + per-sample PIL
    transforms ``RandomRotation(18)``, ``RandomAffine(scale=(0.9, 1.1))``,
    ``ColorJitter(contrast=0.2)``, ``ToTensor()``, a ``Subset`` of the same indices and a
    shuffling ``DataLoader`` (``num_workers`` 0 and 2 by default);
(c) the ratio (b)/(a);
(d) one epoch of forward + backward + Adam step of study B's ``scratch`` CNN over pre-built
    batches, and (a) as a percentage of it (how much of a training epoch the data costs).

Usage::

    python benchmarks/data_pipeline.py                      # full epoch (minutes on 2 CPU cores)
    python benchmarks/data_pipeline.py --limit-batches 100  # quick look; times are scaled to one epoch
    python benchmarks/data_pipeline.py --num-workers 0 2 4 --transforms v2
    python benchmarks/data_pipeline.py --threads 1          # e.g. on a busy shared machine

On a machine other processes keep busy, torch's default of one intra-op thread per core makes
every small op wait for a descheduled thread (tens of ms per op at load 9 on 2 cores), which
slows the batch pipeline and the training step alike; compare with ``--threads 1``.

Fashion-MNIST is found like everywhere else in fmnist (``--data-dir``, ``$FMNIST_DATA_DIR``,
``./data``, Debian's ``/usr/share/datasets/fashion-mnist``); torchvision gets a temporary root
with decompressed copies, since it only reads uncompressed raw files.
"""

from __future__ import annotations

import argparse
import gzip
import math
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fmnist.data.augment import AugmentSettings  # noqa: E402
from fmnist.data.datamodule import ImageDataModule  # noqa: E402
from fmnist.data.sources import SPLIT_FILES, find_raw_dir  # noqa: E402
from fmnist.errors import FmnistError  # noqa: E402


def scratch_cnn() -> nn.Module:
    """Study B's ``scratch`` model (225,034 parameters)."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def torchvision_root(raw_dir: Path, tmp: Path) -> Path:
    """A root whose ``FashionMNIST/raw`` holds uncompressed copies (links where already uncompressed)."""
    raw = tmp / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for pair in SPLIT_FILES.values():
        for stem in pair:
            plain, packed = raw_dir / stem, raw_dir / f"{stem}.gz"
            if plain.is_file():
                (raw / stem).symlink_to(plain.resolve())
            else:
                with gzip.open(packed, "rb") as src, (raw / stem).open("wb") as dst:
                    shutil.copyfileobj(src, dst)
    return tmp


def timed_batches(batches: Iterable, limit: int, work: Callable[[object], object] | None = None,
                  keep: list | None = None) -> tuple[float, int]:
    """Seconds to draw up to ``limit`` batches (applying ``work`` to each), and how many were drawn."""
    start, count = time.perf_counter(), 0
    for batch in batches:
        out = work(batch) if work is not None else batch
        if keep is not None:
            keep.append(out)
        count += 1
        if count >= limit:
            break
    return time.perf_counter() - start, count


def ours(dm: ImageDataModule, limit: int, keep: list | None = None) -> tuple[float, int]:
    dm.trainer = SimpleNamespace(training=True)  # what Lightning's fit loop looks like to the hook
    return timed_batches(dm.train_dataloader(), limit, lambda batch: dm.on_after_batch_transfer(batch, 0), keep)


def conventional(root: Path, indices: torch.Tensor, batch_size: int, num_workers: int, limit: int,
                 flavour: str) -> tuple[float, int]:
    from torchvision import datasets

    if flavour == "v2":
        from torchvision.transforms import v2 as T

        tail = [T.ToImage(), T.ToDtype(torch.float32, scale=True)]
    else:
        from torchvision import transforms as T

        tail = [T.ToTensor()]
    transform = T.Compose([T.RandomRotation(18), T.RandomAffine(degrees=0, scale=(0.9, 1.1)),
                           T.ColorJitter(contrast=0.2), *tail])
    dataset = datasets.FashionMNIST(str(root), train=True, transform=transform, download=False)
    loader = DataLoader(Subset(dataset, indices.tolist()), batch_size=batch_size, shuffle=True, num_workers=num_workers)
    return timed_batches(loader, limit)


def train_epoch(batches: list, model: nn.Module) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    start = time.perf_counter()
    for x, y in batches:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="root holding FashionMNIST/raw (default: fmnist's search order)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, nargs="+", default=[0, 2],
                        help="DataLoader workers for the torchvision pipeline (one row each)")
    parser.add_argument("--transforms", choices=["v1", "v2"], default="v1",
                        help="torchvision.transforms (v1, the classic) or transforms.v2")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: torch's own default, one per core)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--limit-batches", type=int, default=None, help="time only this many batches per pipeline")
    group.add_argument("--epochs-fraction", type=float, default=None, help="time this fraction of an epoch")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    try:
        raw_dir = find_raw_dir("fashion", args.data_dir, download=False)
    except FmnistError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    start = time.perf_counter()
    dm = ImageDataModule(data_dir=args.data_dir, batch_size=args.batch_size, augment=AugmentSettings(enabled=True))
    dm.setup("fit")
    setup_s = time.perf_counter() - start
    n_train = len(dm.train_set)
    epoch_batches = math.ceil(n_train / args.batch_size)
    if args.limit_batches:
        limit = min(args.limit_batches, epoch_batches)
    elif args.epochs_fraction:
        limit = max(1, min(epoch_batches, round(args.epochs_fraction * epoch_batches)))
    else:
        limit = epoch_batches
    scale = epoch_batches / limit  # measured time -> one full epoch

    print(f"Fashion-MNIST from {raw_dir}: {n_train:,} training images, batch {args.batch_size}, "
          f"{epoch_batches} batches per epoch; timing {limit} batches per pipeline"
          + ("" if limit == epoch_batches else f" (scaled x{scale:.2f} to one epoch)"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}; "
          f"datamodule setup (load + split, not timed below): {setup_s:.2f} s")

    ours(dm, 5)  # warm-up: first grid_sample / allocator
    batches: list = []
    ours_s, ours_n = ours(dm, limit, keep=batches)
    ours_epoch = ours_s * epoch_batches / ours_n
    rows = [("ours: in-memory + batch augment", ours_n, ours_s, ours_epoch)]

    tv_epochs: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="fmnist-bench-") as tmp:
        root = torchvision_root(raw_dir, Path(tmp))
        for workers in args.num_workers:
            conventional(root, dm.train_set.indices, args.batch_size, 0, 3, args.transforms)  # warm-up
            seconds, n = conventional(root, dm.train_set.indices, args.batch_size, workers, limit, args.transforms)
            tv_epochs[workers] = seconds * epoch_batches / n
            rows.append((f"torchvision {args.transforms} PIL transforms, workers={workers}", n, seconds, tv_epochs[workers]))

    model = scratch_cnn()
    train_epoch(batches[:5], model)  # warm-up
    train_s = train_epoch(batches, model)
    train_epoch_s = train_s * epoch_batches / len(batches)
    rows.append(("scratch CNN fwd+bwd+Adam (pre-built batches)", len(batches), train_s, train_epoch_s))

    print()
    header = f"{'pipeline':<52} {'batches':>7} {'timed s':>8} {'epoch s':>8} {'images/s':>9}"
    print(header)
    print("-" * len(header))
    for name, n, seconds, epoch in rows:
        print(f"{name:<52} {n:>7} {seconds:>8.2f} {epoch:>8.2f} {n_train / epoch:>9,.0f}")
    print()
    for workers, epoch in tv_epochs.items():
        ratio = epoch / ours_epoch
        print(f"speed-up of ours over torchvision (workers={workers}): {ratio:5.1f}x   "
              f"[goal >= 5x: {'met' if ratio >= 5 else 'MISSED'}]")
    share = 100 * ours_epoch / train_epoch_s
    print(f"ours as a share of a scratch training epoch:        {share:5.1f}%   "
          f"[goal <= 10%: {'met' if share <= 10 else 'MISSED'}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
