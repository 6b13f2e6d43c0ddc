"""The real datasets, where present (skipped otherwise): counts, balance, pixel statistics, default split.

Fashion-MNIST is found through the library's search order (Debian's ``dataset-fashion-mnist``
puts it in /usr/share/datasets/fashion-mnist); MNIST through ``FMNIST_DATA_DIR``.
"""

from __future__ import annotations

import torch

from fmnist.data.datamodule import ImageDataModule
from fmnist.data.sources import load_dataset
from fmnist.data.stats import pixel_stats, split_stats


def test_fashion_counts_and_balance(real_fashion_root: str) -> None:
    data = load_dataset("fashion", real_fashion_root)
    assert data.train_images.shape == (60_000, 28, 28) and data.test_images.shape == (10_000, 28, 28)
    assert data.train_images.dtype == torch.uint8 and data.train_labels.dtype == torch.int64
    assert torch.bincount(data.train_labels, minlength=10).tolist() == [6_000] * 10
    assert torch.bincount(data.test_labels, minlength=10).tolist() == [1_000] * 10


def test_fashion_pixel_statistics_match_study_a(real_fashion_root: str) -> None:
    data = load_dataset("fashion", real_fashion_root)
    mean, median, std = pixel_stats(data.train_images)
    assert (round(mean, 2), median, round(std, 2)) == (72.94, 0, 90.02)
    stats = split_stats("fashion", "test", real_fashion_root)
    assert stats.images == 10_000 and stats.class_counts == [1_000] * 10


def test_mnist_counts_and_original_order(real_mnist_root: str) -> None:
    data = load_dataset("mnist", real_mnist_root)
    assert data.train_images.shape == (60_000, 28, 28) and data.test_images.shape == (10_000, 28, 28)
    assert data.train_labels[:8].tolist() == [5, 0, 4, 1, 9, 2, 1, 3]
    assert data.test_labels[:8].tolist() == [7, 2, 1, 0, 4, 1, 4, 9]
    mean, _, std = pixel_stats(data.train_images)
    assert (round(mean, 2), round(std, 2)) == (33.32, 78.57)


def test_default_datamodule_split(real_fashion_root: str) -> None:
    dm = ImageDataModule(data_dir=real_fashion_root)
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (51_000, 9_000, 10_000)
    assert dm.class_counts("val") == [900] * 10
    assert dm.class_counts("train") == [5_100] * 10
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (64, 28, 28) and labels.shape == (64,)


def test_both_datasets_under_one_root(real_data_root: str) -> None:
    """The combined root (what transfer / cross-dataset runs pass as --data.data_dir) serves both."""
    assert load_dataset("fashion", real_data_root).train_images.shape[0] == 60_000
    assert load_dataset("mnist", real_data_root).train_labels[0].item() == 5
