"""Small callbacks the training CLI adds to every run."""

from __future__ import annotations

import time

import lightning as L


class EpochTimer(L.Callback):
    """Wall-clock seconds of each training epoch (train + validation), for metrics.json and benchmarks."""

    def __init__(self) -> None:
        self.epoch_seconds: list[float] = []
        self._start: float | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Runs after the epoch's validation loop in Lightning 2, so this covers train + val.
        if self._start is not None:
            self.epoch_seconds.append(time.perf_counter() - self._start)
            pl_module.log("epoch_seconds", self.epoch_seconds[-1], on_epoch=True, sync_dist=False)
            self._start = None

    def state_dict(self) -> dict:
        return {"epoch_seconds": list(self.epoch_seconds)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.epoch_seconds = list(state_dict.get("epoch_seconds", []))
