"""``FocusOnHardExamples``: later epochs train only on the images the network still gets wrong (issue 32).

Add it to a recipe's ``trainer.callbacks``::

    - class_path: fmnist.training.hard_examples.FocusOnHardExamples
      init_args: {keep: 0.5, start_epoch: 1}

Epochs before ``start_epoch`` run over every image and record each image's loss as the training step
computed it; from ``start_epoch`` on, each epoch trains on the ``keep`` share with the highest latest loss
(:class:`~fmnist.data.selection.HardExampleSampler`). The learning-rate schedule is planned over the steps
that will really run (:func:`planned_training_steps`), so a one-cycle schedule still ends at its floor.
Under DDP each process scores the images of its shard, the tables are summed at the end of each epoch, and every
process then chooses the same images and shards them again.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

from fmnist.data.selection import HardExampleSampler, batches_per_epoch, check_shares, focused_size
from fmnist.errors import FmnistError
from fmnist.training.weight_averaging import refresh_batch_norm


class FocusOnHardExamples(Callback):
    """Train epochs ``start_epoch..`` on the hardest ``keep`` share of the training images.

    Args:
        keep: share of the training images each later epoch trains on.
        start_epoch: the first focused epoch (0-based; 1 = after one full epoch that scores every image).
        explore: share of the kept images drawn at random from the easier rest.
        bn_refresh_batches: after each focused epoch, measure BatchNorm's running statistics again on this
            many batches of *all* training images (forward only). A focused epoch leaves statistics of the hard
            share (mostly tops and coats), which the evaluation of every class would otherwise use. 0: off.
            Validation inside a focused epoch runs before this refresh and sees the hard share's statistics.
        balanced: choose the hardest ``keep`` share within each class rather than over all images, so every
            class keeps its share of the training steps.
    """

    def __init__(self, keep: float = 0.5, start_epoch: int = 1, explore: float = 0.0,
                 bn_refresh_batches: int = 0, balanced: bool = False) -> None:
        check_shares(keep, explore, "FocusOnHardExamples")
        if start_epoch < 1:
            raise FmnistError(f"FocusOnHardExamples: start_epoch must be at least 1 (epoch 0 scores every image), "
                              f"got {start_epoch}.")
        if bn_refresh_batches < 0:
            raise FmnistError(f"FocusOnHardExamples: bn_refresh_batches must be >= 0, got {bn_refresh_batches}.")
        self.keep, self.start_epoch, self.explore = keep, start_epoch, explore
        self.bn_refresh_batches, self.balanced = bn_refresh_batches, balanced
        self.sampler: HardExampleSampler | None = None
        self._restored: dict[str, Any] | None = None

    @staticmethod
    def _data(trainer: L.Trainer) -> Any:
        data = trainer.datamodule
        if data is None or not hasattr(data, "train_sampler") or getattr(data, "train_set", None) is None:
            raise FmnistError("FocusOnHardExamples needs fmnist's data module (its train_set and train_sampler); "
                              "drop it from trainer.callbacks for other data.")
        return data

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._data(trainer)
        # Each epoch's loader must be built again: its length is the epoch's selection.
        trainer.reload_dataloaders_every_n_epochs = 1

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After every callback's setup (TrainOnValidation may have grown the training set), before the loaders.
        data = self._data(trainer)
        self.sampler = HardExampleSampler(len(data.train_set), self.keep, self.explore,
                                          seed=int(getattr(data.hparams, "seed", 0) or 0),
                                          labels=data.train_set.labels if self.balanced else None,
                                          num_replicas=trainer.world_size, rank=trainer.global_rank)
        if self._restored is not None:
            self.sampler.load_state_dict(self._restored)
            self._restored = None
        data.train_sampler = self.sampler

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        data = trainer.datamodule
        if data is not None and getattr(data, "train_sampler", None) is self.sampler:
            data.train_sampler = None  # later loaders (BatchNorm refresh, a second fit) see the plain shuffle

    def planned_steps(self, trainer: L.Trainer) -> int:
        """Optimizer steps of the whole fit (of each process): full epochs first, then the focused ones."""
        data = self._data(trainer)
        size, batch, world = len(data.train_set), int(data.batch_size), max(1, int(trainer.world_size))
        focused = focused_size(self.keep, size, data.train_set.labels if self.balanced else None)
        epochs = int(trainer.max_epochs or 0)
        if epochs < 1:
            raise FmnistError("FocusOnHardExamples plans its schedule over trainer.max_epochs; set it (>= 1).")
        accumulate = max(1, int(trainer.accumulate_grad_batches))
        limit = getattr(trainer, "limit_train_batches", None)
        steps = 0
        for epoch in range(epochs):
            images = size if epoch < self.start_epoch else focused
            batches = batches_per_epoch(math.ceil(images / world), batch)  # each process's share
            if isinstance(limit, int) and not isinstance(limit, bool):
                batches = min(batches, limit)
            elif isinstance(limit, float) and limit < 1.0:
                batches = int(batches * limit)  # as Lightning cuts a fractional limit
            steps += math.ceil(batches / accumulate)
        return min(steps, trainer.max_steps) if trainer.max_steps and trainer.max_steps > 0 else steps

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        logits = outputs.get("logits") if isinstance(outputs, dict) else None
        if self.sampler is None or logits is None:
            raise FmnistError("FocusOnHardExamples needs the training step's logits (outputs['logits']); use "
                              "fmnist's Classifier or return them from training_step.")
        _, labels = batch
        with torch.no_grad():
            losses = F.cross_entropy(logits.float(), labels, reduction="none")
        self.sampler.record(batch_idx * int(trainer.datamodule.batch_size), losses)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Runs before the checkpoint callbacks (Lightning orders them last), so the epoch's checkpoint holds the
        # refreshed statistics and the next epoch's selection.
        if self.sampler is None:
            return
        # Every process's losses of this epoch into every process's table (sums over DDP; alone, nothing to do).
        self.sampler.merge(lambda table: trainer.strategy.reduce(table, reduce_op="sum"))
        if self.bn_refresh_batches and self.sampler.active is not None:
            refresh_batch_norm(pl_module, trainer, self.bn_refresh_batches, self._every_image_loader(trainer))
        if trainer.current_epoch + 1 >= self.start_epoch:
            self.sampler.focus()

    def _every_image_loader(self, trainer: L.Trainer) -> Any:
        """A plain shuffled loader over all training images (the data module's own, without our sampler)."""
        data = self._data(trainer)
        data.train_sampler = None
        try:
            return data.train_dataloader()
        finally:
            data.train_sampler = self.sampler

    def state_dict(self) -> dict[str, Any]:
        return {} if self.sampler is None else self.sampler.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = state_dict or None


def planned_training_steps(trainer: L.Trainer) -> int:
    """The optimizer steps a fit will run: a :class:`FocusOnHardExamples` plan, else Lightning's estimate."""
    for callback in trainer.callbacks:
        if isinstance(callback, FocusOnHardExamples):
            return callback.planned_steps(trainer)
    return int(trainer.estimated_stepping_batches)
