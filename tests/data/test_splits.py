"""Stratified splits and folds, and the datamodule built on them (synthetic data)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.model_selection import StratifiedKFold, train_test_split

from fmnist.data.augment import AugmentSettings
from fmnist.data.datamodule import ImageDataModule
from fmnist.data.sources import load_dataset
from fmnist.data.splits import check_fold_count, stratified_fold, stratified_split, stratified_subset
from fmnist.errors import FmnistError


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    """1,000 labels over 10 classes of unequal size (55..145), shuffled."""
    rng = np.random.default_rng(0)
    sizes = [55 + 10 * k for k in range(10)]
    return rng.permutation(np.repeat(np.arange(10), sizes))


def per_class(labels: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return np.bincount(labels[idx], minlength=10)


# -- stratified_split ------------------------------------------------------------------------------
def test_split_is_stratified(labels: np.ndarray) -> None:
    train, val = stratified_split(labels, 0.15, seed=42)
    expected = 0.15 * np.bincount(labels)
    assert np.all(np.abs(per_class(labels, val) - expected) <= 1), (per_class(labels, val), expected)
    assert len(val) == 150


def test_split_is_disjoint_complete_and_sorted(labels: np.ndarray) -> None:
    train, val = stratified_split(labels, 0.2, seed=1)
    assert len(np.intersect1d(train, val)) == 0
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(labels)))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)


def test_split_is_deterministic_per_seed_and_differs_across_seeds(labels: np.ndarray) -> None:
    a_train, a_val = stratified_split(labels, 0.15, seed=42)
    b_train, b_val = stratified_split(torch.as_tensor(labels), 0.15, seed=42)  # tensors work too
    assert np.array_equal(a_val, b_val) and np.array_equal(a_train, b_train)
    _, c_val = stratified_split(labels, 0.15, seed=43)
    assert not np.array_equal(a_val, c_val)


def test_split_rejects_bad_fraction(labels: np.ndarray) -> None:
    for fraction in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(FmnistError, match="val_fraction must be between 0 and 1"):
            stratified_split(labels, fraction)


def test_never_the_first_n_images() -> None:
    """The classic loader bug: labels sorted by class, 'last 10%' is one class. Stratification avoids it."""
    sorted_labels = np.repeat(np.arange(10), 100)
    _, val = stratified_split(sorted_labels, 0.1, seed=0)
    assert per_class(sorted_labels, val).tolist() == [10] * 10


# -- stratified_fold -------------------------------------------------------------------------------
@pytest.mark.parametrize("n_folds", [2, 3, 5])
def test_folds_partition_and_are_stratified(labels: np.ndarray, n_folds: int) -> None:
    vals = []
    for fold in range(n_folds):
        train, val = stratified_fold(labels, n_folds, fold, seed=42)
        assert len(np.intersect1d(train, val)) == 0
        assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(labels)))
        assert np.all(np.abs(per_class(labels, val) - np.bincount(labels) / n_folds) <= 1)
        vals.append(val)
    union = np.concatenate(vals)
    assert len(union) == len(labels) and np.array_equal(np.sort(union), np.arange(len(labels)))


def test_folds_deterministic_per_seed(labels: np.ndarray) -> None:
    assert np.array_equal(stratified_fold(labels, 3, 1, seed=42)[1], stratified_fold(labels, 3, 1, seed=42)[1])
    assert not np.array_equal(stratified_fold(labels, 3, 1, seed=42)[1], stratified_fold(labels, 3, 1, seed=7)[1])


@pytest.mark.parametrize(("n_folds", "fold", "message"), [
    (1, 0, "n_folds must be at least 2, got 1"),
    (0, 0, "n_folds must be at least 2"),
    (3, 3, r"fold must be in 0\.\.2 for n_folds=3, got 3"),
    (3, -1, r"fold must be in 0\.\.2 for n_folds=3, got -1"),
])
def test_bad_fold_arguments(labels: np.ndarray, n_folds: int, fold: int, message: str) -> None:
    with pytest.raises(FmnistError, match=message):
        stratified_fold(labels, n_folds, fold)


def test_subset_is_balanced_and_inside_the_given_indices(labels: np.ndarray) -> None:
    train, _ = stratified_split(labels, 0.15, seed=42)
    subset = stratified_subset(train, labels, 200, seed=42)
    assert len(subset) == 200 and np.all(np.isin(subset, train))
    assert np.all(np.abs(per_class(labels, subset) - 200 * np.bincount(labels[train]) / len(train)) <= 1)
    assert stratified_subset(train, labels, 10_000) is train


# -- datamodule on synthetic data ------------------------------------------------------------------
def build(data_dir: str, **kwargs) -> ImageDataModule:
    dm = ImageDataModule(data_dir=data_dir, **kwargs)
    dm.setup("fit")
    return dm


def test_datamodule_sizes_and_class_counts(synthetic_data_dir: str) -> None:
    dm = build(synthetic_data_dir)
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (510, 90, 100)
    assert dm.class_counts("val") == [9] * 10
    assert dm.class_counts("train") == [51] * 10
    assert dm.class_counts("test") == [10] * 10
    assert dm.num_classes == 10 and dm.class_names[0] == "T-shirt/top"
    train_idx, val_idx = dm.train_set.indices.numpy(), dm.val_set.indices.numpy()
    assert len(np.intersect1d(train_idx, val_idx)) == 0 and len(np.union1d(train_idx, val_idx)) == 600


def test_class_counts_before_setup_is_clear(synthetic_data_dir: str) -> None:
    with pytest.raises(FmnistError, match="call setup"):
        ImageDataModule(data_dir=synthetic_data_dir).class_counts()


def test_datamodule_takes_rows_by_index(synthetic_data_dir: str) -> None:
    dm = build(synthetic_data_dir, dataset="mnist")
    data = load_dataset("mnist", synthetic_data_dir)
    idx = dm.val_set.indices
    assert torch.equal(dm.val_set.images, data.train_images[idx])
    assert torch.equal(dm.val_set.labels, data.train_labels[idx])


def test_test_set_is_untouched(synthetic_data_dir: str) -> None:
    data = load_dataset("fashion", synthetic_data_dir)
    for kwargs in ({}, {"n_folds": 3, "fold": 2}, {"train_subset": 50}, {"val_fraction": 0.5, "seed": 3}):
        dm = build(synthetic_data_dir, **kwargs)
        assert torch.equal(dm.test_set.images, data.test_images) and torch.equal(dm.test_set.labels, data.test_labels)
        assert dm.test_set.indices.tolist() == list(range(100))


def test_same_seed_same_split_other_seed_other_split(synthetic_data_dir: str) -> None:
    a, b, c = build(synthetic_data_dir), build(synthetic_data_dir), build(synthetic_data_dir, seed=0)
    assert torch.equal(a.val_set.indices, b.val_set.indices)
    assert not torch.equal(a.val_set.indices, c.val_set.indices)


def test_fold_mode(synthetic_data_dir: str) -> None:
    vals = []
    for fold in range(3):
        dm = build(synthetic_data_dir, n_folds=3, fold=fold)
        assert (len(dm.train_set), len(dm.val_set)) == (400, 200)
        assert dm.class_counts("val") == [20] * 10
        vals.append(dm.val_set.indices)
    assert sorted(torch.cat(vals).tolist()) == list(range(600))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_folds": 3}, "needs both n_folds and fold"),
    ({"fold": 0}, "needs both n_folds and fold"),
    ({"n_folds": 3, "fold": 3}, r"fold must be in 0\.\.2"),
    ({"channels": 2}, "channels must be 1 or 3"),
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"dataset": "cifar"}, "Unknown dataset 'cifar'"),
])
def test_datamodule_bad_arguments(synthetic_data_dir: str, kwargs: dict, message: str) -> None:
    with pytest.raises(FmnistError, match=message):
        ImageDataModule(data_dir=synthetic_data_dir, **kwargs)


def test_train_subset(synthetic_data_dir: str) -> None:
    dm = build(synthetic_data_dir, train_subset=100)
    assert len(dm.train_set) == 100 and dm.class_counts("train") == [10] * 10
    assert len(dm.val_set) == 90  # validation unchanged
    assert len(np.intersect1d(dm.train_set.indices.numpy(), dm.val_set.indices.numpy())) == 0


def test_standardize_computes_train_mean_and_std(synthetic_data_dir: str) -> None:
    dm = build(synthetic_data_dir, standardize=True)
    pixels = dm.train_set.images.double() / 255.0
    assert dm.mean == pytest.approx(pixels.mean().item(), rel=1e-5)
    assert dm.std == pytest.approx(pixels.std().item(), rel=1e-4)
    assert 0.1 < dm.mean < 0.4  # synthetic images: dim background and one bright band
    images, labels = next(iter(dm.val_dataloader()))
    x, y = dm.on_after_batch_transfer((images, labels), 0)
    assert torch.allclose(x, (images.float().unsqueeze(1) / 255.0 - dm.mean) / dm.std, atol=1e-5)
    assert torch.equal(y, labels)
    assert dm.state_dict() == {"mean": dm.mean, "std": dm.std}
    fresh = ImageDataModule(data_dir=synthetic_data_dir, standardize=True)
    fresh.load_state_dict(dm.state_dict())
    assert torch.allclose(fresh.on_after_batch_transfer((images, labels), 0)[0], x)


def test_no_standardize_is_unit_scale(synthetic_data_dir: str) -> None:
    dm = build(synthetic_data_dir)
    images, labels = next(iter(dm.test_dataloader()))
    x, _ = dm.on_after_batch_transfer((images, labels), 0)
    assert images.dtype == torch.uint8 and images.shape == (100, 28, 28)  # eval batch 4 x 64 > 100 test images
    assert x.dtype == torch.float32 and x.shape == (100, 1, 28, 28)
    assert torch.equal(x, images.float().unsqueeze(1) / 255.0)


def test_resnet18_input_shape(synthetic_data_dir: str) -> None:
    dm = build(synthetic_data_dir, image_size=32, channels=3, batch_size=8, augment=AugmentSettings(enabled=True))
    dm.trainer = SimpleNamespace(training=True)
    images, labels = next(iter(dm.train_dataloader()))
    x, y = dm.on_after_batch_transfer((images, labels), 0)
    assert x.shape == (8, 3, 32, 32) and y.shape == (8,)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])  # grey replicated


def test_loaders_batch_sizes_and_shuffling(synthetic_data_dir: str) -> None:
    dm = build(synthetic_data_dir, batch_size=32, eval_batch_size=50)
    train_batches = list(dm.train_dataloader())
    assert [len(b[1]) for b in train_batches] == [32] * 15 + [30]
    assert [len(b[1]) for b in dm.val_dataloader()] == [50, 40]
    seen = torch.cat([b[1] for b in train_batches])
    assert torch.bincount(seen).tolist() == [51] * 10  # every training image exactly once per epoch
    order = [b[1] for b in dm.val_dataloader()]
    assert torch.equal(torch.cat(order), dm.val_set.labels)  # evaluation keeps order


def test_defaults_are_the_documented_split_and_seed() -> None:
    """docs/data.md: 15% stratified, seed 42 (51,000 / 9,000 of the real 60,000); folds and subsets seed 42 too.
    Checked against scikit-learn called directly with those settings."""
    labels = np.repeat(np.arange(10), 100)
    train, val = stratified_split(labels)
    assert len(val) == 150 and np.bincount(labels[val]).tolist() == [15] * 10
    _, expected_val = train_test_split(np.arange(1000), test_size=0.15, stratify=labels, random_state=42)
    np.testing.assert_array_equal(val, np.sort(expected_val))
    fold_val = stratified_fold(labels, 5, 0)[1]
    expected_fold = next(StratifiedKFold(5, shuffle=True, random_state=42).split(np.zeros(1000), labels))[1]
    np.testing.assert_array_equal(fold_val, np.sort(expected_fold))
    subset = stratified_subset(train, labels, 100)
    expected_subset, _ = train_test_split(train, train_size=100, stratify=labels[train], random_state=42)
    np.testing.assert_array_equal(subset, np.sort(expected_subset))


def test_a_subset_as_large_as_the_indices_is_all_of_them_in_their_order(labels: np.ndarray) -> None:
    indices = np.array([5, 3, 9, 1, 7, 2, 8, 0, 6, 4]) * 7
    assert stratified_subset(indices, labels, len(indices)) is indices  # nothing drawn, order kept
    assert stratified_subset(indices, labels, 1000) is indices


def test_fold_count_checks_the_smallest_class_present_to_the_image() -> None:
    """Classes of 3, 5 and 0 (absent) images: 3 folds fit exactly, 4 do not; an absent class is not the smallest."""
    labels = np.array([0] * 3 + [2] * 5)
    check_fold_count(labels, 3)
    with pytest.raises(FmnistError) as info:
        check_fold_count(labels, 4)
    assert str(info.value) == ("--folds 4 needs at least 4 training images of every class, but the smallest class "
                               "has 3 (of 8 images); use --folds 2 to 3.")
    with pytest.raises(FmnistError, match=r"smallest class has 1 \(of 3 images\); use --folds 2 to 2\.$"):
        check_fold_count(np.array([0, 0, 1]), 2)
    with pytest.raises(FmnistError, match=r"smallest class has 0 \(of 0 images\)"):
        check_fold_count(np.array([], dtype=np.int64), 2)
