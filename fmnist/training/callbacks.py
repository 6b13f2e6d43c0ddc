"""Small callbacks the training CLI adds to every run: epoch timing and exact resume."""

from __future__ import annotations

import random
import time
from typing import Any

import lightning as L
import numpy as np
import torch


class EpochTimer(L.Callback):
    """Wall-clock seconds of each training epoch (train + validation), for metrics.json and benchmarks.

    Each epoch's time is taken at the end of its validation and again at the end of the training epoch, and
    the checkpoint callbacks run after this one at either point, so a checkpoint carries the time of the epoch
    it ends. Times are kept by epoch index: a resumed run keeps those of its checkpoint and adds the epochs it
    starts itself; an epoch this process did not start (the checkpoint's, whose end Lightning plays again on
    resume) is never timed again, and no epoch is counted twice (issue 30 saw [5.08, 20.65, 4.16] for three
    epochs of ~20 s after a resume).
    """

    def __init__(self) -> None:
        self.seconds: dict[int, float] = {}  # epoch index (0-based) -> seconds
        self._start: float | None = None
        self._epoch: int | None = None

    @property
    def epoch_seconds(self) -> list[float]:
        return [self.seconds[epoch] for epoch in sorted(self.seconds)]

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start, self._epoch = time.perf_counter(), trainer.current_epoch

    def _stamp(self, trainer: L.Trainer) -> float | None:
        if self._start is None or self._epoch != trainer.current_epoch:
            return None  # an epoch this process did not start (the checkpoint's, ended again on resume)
        self.seconds[self._epoch] = time.perf_counter() - self._start
        return self.seconds[self._epoch]

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._stamp(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Runs after the epoch's validation loop in Lightning 2, so this covers train + val.
        seconds = self._stamp(trainer)
        if seconds is not None:
            pl_module.log("epoch_seconds", seconds, on_epoch=True, sync_dist=False)
        self._start = self._epoch = None

    def state_dict(self) -> dict:
        return {"epoch_seconds": self.epoch_seconds, "epochs": sorted(self.seconds)}

    def load_state_dict(self, state_dict: dict) -> None:
        seconds = list(state_dict.get("epoch_seconds", []))
        epochs = list(state_dict.get("epochs", range(len(seconds))))  # older checkpoints: epochs 0..n-1
        self.seconds = {int(epoch): float(value) for epoch, value in zip(epochs, seconds, strict=False)}


def capture_rng_states() -> dict[str, Any]:
    """Every random generator a training step draws from, as tensors and plain values.

    Plain values only, so the checkpoint still loads with ``weights_only=True``: numpy's key array is
    stored as a tensor, not as a pickled ``ndarray``.
    """
    kind, keys, position, has_gauss, cached_gauss = np.random.get_state()
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "position": int(position), "has_gauss": int(has_gauss), "cached_gauss": float(cached_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Put back what :func:`capture_rng_states` recorded (the CUDA part only where CUDA is in use)."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    saved = states["numpy"]
    np.random.set_state((saved["kind"], saved["keys"].numpy().astype(np.uint32), saved["position"],
                         saved["has_gauss"], saved["cached_gauss"]))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class ExactResume(L.Callback):
    """Make a killed-and-resumed run end with the same numbers as one that was never stopped.

    Lightning's checkpoint restores weights, optimizer, schedulers and callback states but not the random
    generators, so a resumed run shuffles, augments and drops out differently from the epoch it resumes at
    (issue 18: 82.42% resumed vs 83.13% uninterrupted). The states are captured when the checkpoint is
    written (the end of an epoch, after validation) and put back when the resumed fit starts and again
    after its sanity-check validation (which draws from them too), before the training loop makes its
    first data iterator: a resumed Lightning fit uses that iterator for the next epoch, where an
    uninterrupted one makes it at that epoch's start, with the same generator state either way.
    ``tests/training/test_exact_resume.py`` checks the whole chain, so a Lightning upgrade that moves
    these steps fails there.

    Lightning also skips the epoch-interval learning-rate step of the epoch a checkpoint was written in
    (``ReduceLROnPlateau`` needs ``val_loss``, which the checkpoint lacks): the monitored values are saved
    here and that step is made on resume, so the schedule does not fall one epoch behind.

    It also carries the run's elapsed wall time across processes, so ``metrics.json`` reports the time
    the whole run took up to its last checkpoint plus the resumed process, not the last process alone.
    Exactness holds for a fixed device and thread count (``cpu_threads: auto`` may change sum order).
    """

    def __init__(self) -> None:
        self.elapsed_before = 0.0  # seconds spent by earlier processes, up to the checkpoint resumed from
        self.resumes = 0
        self._process_started: float | None = None
        self._pending: dict[str, Any] | None = None
        self._monitored: dict[str, float] | None = None  # the checkpoint's metrics, for the skipped LR step
        self._trainer: L.Trainer | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._process_started = time.perf_counter()
        self._restore()

    def on_sanity_check_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()  # the sanity check drew from the generators: back to the checkpoint's states

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pending = None

    def _restore(self) -> None:
        if self._pending is not None:
            restore_rng_states(self._pending)

    def elapsed(self) -> float:
        """Seconds the run has trained so far, over all its processes."""
        now = time.perf_counter() - self._process_started if self._process_started is not None else 0.0
        return self.elapsed_before + now

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        monitored, self._monitored = self._monitored, None
        if monitored is None or not trainer.fit_loop.restarting:
            return  # Lightning makes this epoch's step itself
        for config in trainer.lr_scheduler_configs:
            if config.interval != "epoch" or (trainer.current_epoch + 1) % config.frequency:
                continue
            if config.reduce_on_plateau:
                if config.monitor in monitored:
                    config.scheduler.step(monitored[config.monitor])
            else:
                config.scheduler.step()

    def _monitored_metrics(self) -> dict[str, float]:
        if self._trainer is None:
            return {}
        monitors = {config.monitor for config in self._trainer.lr_scheduler_configs if config.reduce_on_plateau}
        metrics = self._trainer.callback_metrics
        return {name: float(metrics[name]) for name in monitors if name in metrics}

    def state_dict(self) -> dict[str, Any]:
        return {"rng": capture_rng_states(), "elapsed_seconds": self.elapsed(), "resumes": self.resumes,
                "monitored": self._monitored_metrics()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict.get("rng")
        self._monitored = state_dict.get("monitored")
        self.elapsed_before = float(state_dict.get("elapsed_seconds", 0.0))
        self.resumes = int(state_dict.get("resumes", 0)) + 1
