"""The LightningDataModule: whole dataset in memory, stratified split or fold, batch-level work on device."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from fmnist.data.augment import AugmentSettings, settings_from_hparams
from fmnist.data.sources import dataset_info, load_dataset
from fmnist.data.splits import stratified_fold, stratified_split, stratified_subset
from fmnist.data.transforms import InputTransform, to_unit_float
from fmnist.errors import FmnistError


class InMemoryDataset(Dataset):
    """uint8 images + labels; ``__getitems__`` hands a whole batch to the DataLoader in one indexing op."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, indices: np.ndarray | None = None) -> None:
        if indices is not None:
            index = torch.as_tensor(indices, dtype=torch.long)
            images, labels = images[index], labels[index]
            self.indices = index
        else:
            self.indices = torch.arange(len(labels))
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]

    def __getitems__(self, batch: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(batch, dtype=torch.long)
        return self.images[index], self.labels[index]


def _collate_batch(batch: Any) -> Any:
    """Batches are already stacked by ``__getitems__``; single samples (no batch sampler) get stacked here."""
    if isinstance(batch, tuple):
        return batch
    images, labels = zip(*batch, strict=True)
    return torch.stack(images), torch.stack(labels)


class ImageDataModule(L.LightningDataModule):
    """Any registered image dataset (Fashion-MNIST, MNIST, ...), held as uint8 tensors; normalisation and
    augmentation run per batch on the batch's device.

    Args:
        dataset: a name of the dataset registry (``fashion``, ``mnist``; ``fmnist.data.sources``).
        data_dir: root holding ``FashionMNIST/raw`` / ``MNIST/raw`` (default: search order of ``fmnist.data.sources``).
        batch_size: training batch size (the studies: 64).
        eval_batch_size: batch size for validation/test/predict (default: 4x ``batch_size``).
        val_fraction: stratified validation share of the 60,000 training images (studies: 0.15).
        seed: split seed (studies: ``random_state=42``).
        n_folds, fold: K-fold mode -- fold ``fold`` of ``n_folds`` stratified folds is the validation set.
        train_subset: keep a stratified subset of this many training images (quick runs).
        standardize: subtract the training mean and divide by its std after scaling to [0, 1].
        image_size, channels: output size and channels (ResNet18: 32 and 3).
        augment: training-batch augmentation, one group (``data.augment.enabled``, ``.rotation``, ``.zoom``,
            ``.contrast``, ``.fill_mode``, ``.random_erasing``, ``.hflip``, ``.translate``, photo-like ``.aspect``,
            ``.reframe``, ``.gamma``, ``.blur``, ``.noise`` and ``.share``): :class:`AugmentSettings`.
        num_workers: DataLoader workers (0 is fastest for in-memory data).
    """

    def __init__(
        self,
        dataset: str = "fashion",
        data_dir: str | None = None,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        val_fraction: float = 0.15,
        seed: int = 42,
        n_folds: int | None = None,
        fold: int | None = None,
        train_subset: int | None = None,
        standardize: bool = False,
        image_size: int = 28,
        channels: int = 1,
        augment: AugmentSettings = AugmentSettings(),  # noqa: B008 (frozen: one shared default is safe)
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        dataset_info(dataset)
        if batch_size < 1:
            raise FmnistError(f"batch_size must be a positive integer, got {batch_size}.")
        if (n_folds is None) != (fold is None):
            raise FmnistError("K-fold mode needs both n_folds and fold (e.g. --data.n_folds 3 --data.fold 0).")
        if n_folds is not None and not 0 <= fold < n_folds:
            raise FmnistError(f"fold must be in 0..{n_folds - 1} for n_folds={n_folds}, got {fold}.")
        if channels not in (1, 3):
            raise FmnistError(f"channels must be 1 or 3, got {channels}.")
        classes = len(dataset_info(dataset).class_names)
        if train_subset is not None and (isinstance(train_subset, bool) or train_subset < classes):
            raise FmnistError(f"train_subset must be a whole number of images, at least one per class ({classes}), "
                              f"got {train_subset}; leave it unset to train on the whole training split.")
        if not 0.0 < val_fraction < 1.0:
            raise FmnistError(f"val_fraction must be between 0 and 1 (e.g. 0.15), got {val_fraction}.")
        settings = AugmentSettings.of(augment)
        self.save_hyperparameters(ignore=["augment"])
        self.hparams["augment"] = dataclasses.asdict(settings)  # plain values: checkpoints load weights-only
        self.dataset_name = dataset
        self.data_dir, self.batch_size = data_dir, batch_size
        self.eval_batch_size = eval_batch_size or 4 * batch_size
        self.num_workers = num_workers
        self.augment = settings
        self.augmenter = settings.build()
        self.mean, self.std = 0.0, 1.0
        self.input_transform = InputTransform(image_size=image_size, channels=channels)
        self.train_set: InMemoryDataset | None = None
        self.val_set: InMemoryDataset | None = None
        self.test_set: InMemoryDataset | None = None
        self.data_source: dict[str, Any] | None = None  # after setup: folder, why, each file's sha256
        # Set by a callback that chooses each epoch's images (FocusOnHardExamples); None: a plain shuffle.
        self.train_sampler: Sampler[int] | None = None

    @classmethod
    def from_hparams(cls, hparams: dict[str, Any], **overrides: Any) -> ImageDataModule:
        """The data module a trained run used, from its saved hyperparameters (either spelling of the augmentation
        settings: runs from before they were one group saved them flat), with ``overrides`` on top."""
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "augment"}
        kept = {k: v for k, v in hparams.items() if k in accepted}
        return cls(**{**kept, "augment": settings_from_hparams(hparams), **overrides})

    @property
    def class_names(self) -> tuple[str, ...]:
        return dataset_info(self.dataset_name).class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_counts(self, split: str = "train") -> list[int]:
        """Images per class in ``train`` / ``val`` / ``test`` (after :meth:`setup`)."""
        subset = {"train": self.train_set, "val": self.val_set, "test": self.test_set}[split]
        if subset is None:
            raise FmnistError("call setup() before asking for class counts.")
        return torch.bincount(subset.labels, minlength=self.num_classes).tolist()

    def split_indices(self, labels: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        hp = self.hparams
        if hp.n_folds is not None:
            train_idx, val_idx = stratified_fold(labels, hp.n_folds, hp.fold, hp.seed)
        else:
            train_idx, val_idx = stratified_split(labels, hp.val_fraction, hp.seed)
        if hp.train_subset:
            train_idx = stratified_subset(train_idx, labels, hp.train_subset, hp.seed)
        return train_idx, val_idx

    def setup(self, stage: str | None = None) -> None:
        if self.test_set is not None:
            return
        data = load_dataset(self.dataset_name, self.data_dir)
        self.data_source = data.provenance.as_dict() if data.provenance is not None else None
        train_idx, val_idx = self.split_indices(data.train_labels)
        self.train_set = InMemoryDataset(data.train_images, data.train_labels, train_idx)
        self.val_set = InMemoryDataset(data.train_images, data.train_labels, val_idx)
        self.test_set = InMemoryDataset(data.test_images, data.test_labels)
        if self.hparams.standardize:
            pixels = self.train_set.images.float().div_(255.0)
            self.mean, self.std = pixels.mean().item(), pixels.std().item()
        self.input_transform = InputTransform(self.mean, self.std, self.hparams.image_size, self.hparams.channels)

    def _loader(self, subset: InMemoryDataset, train: bool) -> DataLoader:
        sampler = self.train_sampler if train else None
        return DataLoader(
            subset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            collate_fn=_collate_batch,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.test_set, train=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, torch.Tensor):  # the model's example input (model summary), already model-ready
            return batch
        images, labels = batch
        x = to_unit_float(images)
        trainer = self.trainer
        if self.augmenter is not None and trainer is not None and trainer.training:
            x = self.augmenter(x)
        return self.input_transform(x), labels

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.mean, self.std = float(state_dict["mean"]), float(state_dict["std"])
        self.input_transform = InputTransform(self.mean, self.std, self.hparams.image_size, self.hparams.channels)


# The name this class had while it served Fashion-MNIST only; kept so that code importing it still runs.
FashionMNISTDataModule = ImageDataModule
