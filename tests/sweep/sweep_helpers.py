"""A callback the sweep tests name by class path in a config (``sweep.sweep_helpers.InterruptIn``)."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import Callback


class InterruptIn(Callback):
    """Press Ctrl-C (raise KeyboardInterrupt) in the first training batch of the run logged as ``version``."""

    def __init__(self, version: str) -> None:
        self.version = version

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.logger is not None and str(trainer.logger.version) == self.version:
            raise KeyboardInterrupt
