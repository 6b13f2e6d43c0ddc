"""Two Lightning callbacks a sweep needs: what each validation scored, and training on train+val for the final fit.

``ValidationRecorder`` is why a trial never needs the test set: it keeps every epoch's validation metrics
and, at the end, picks the epoch whose checkpoint the run keeps (the ``checkpoint.monitor`` of its config),
so the trial's score is the validation accuracy of the very model the run would hand on.

``TrainOnValidation`` is named by class path in a final-fit config (``trainer.callbacks``), so
``python train.py fit --config`` on that config trains the same way: after the data module has split
the data, it moves the validation images into the training set. The run still validates on them
(schedulers and checkpoints need a ``val_loss``), but those numbers are on seen images; its test
accuracy is the result.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from fmnist.data.datamodule import InMemoryDataset
from fmnist.errors import FmnistError


class ValidationRecorder(Callback):
    """Every epoch's ``val_*`` metrics; :meth:`selected` is the epoch the run's checkpoint callback kept."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []
        self.monitor: str | None = None
        self.best_score: float | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        row: dict[str, Any] = {"epoch": trainer.current_epoch + 1}  # counted from 1, like metrics.json's epochs
        for key, value in trainer.callback_metrics.items():
            if key.startswith("val_") and isinstance(value, torch.Tensor) and value.numel() == 1:
                row[key] = float(value)
        self.epochs.append(row)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        callback = trainer.checkpoint_callback
        score = getattr(callback, "best_model_score", None)
        self.monitor = getattr(callback, "monitor", None)
        self.best_score = float(score) if score is not None else None

    def selected(self) -> dict[str, float] | None:
        """The kept checkpoint's epoch (the first one scoring ``best_model_score``); else the last epoch."""
        if not self.epochs:
            return None
        if self.monitor is not None and self.best_score is not None:
            for row in self.epochs:
                if row.get(self.monitor) == self.best_score:
                    return row
        return self.epochs[-1]


class TrainOnValidation(Callback):
    """Train on the training *and* validation images (the final fit after a sweep chose the settings)."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        data = trainer.datamodule
        if stage != "fit" or data is None:
            return
        train, val = getattr(data, "train_set", None), getattr(data, "val_set", None)
        if not isinstance(train, InMemoryDataset) or not isinstance(val, InMemoryDataset):
            raise FmnistError("TrainOnValidation needs fmnist's data module (its train_set and val_set); "
                              "drop it from trainer.callbacks for other data.")
        if getattr(data, "_trains_on_validation", False):
            return  # setup runs again for validate/test; the sets are merged once
        merged = InMemoryDataset(torch.cat([train.images, val.images]), torch.cat([train.labels, val.labels]))
        merged.indices = torch.cat([train.indices, val.indices])
        data.train_set = merged
        data._trains_on_validation = True
