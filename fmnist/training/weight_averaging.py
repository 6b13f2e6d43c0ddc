"""Exponential moving average (EMA) of the weights, made safe for BatchNorm networks and for testing.

Lightning's :class:`~lightning.pytorch.callbacks.EMAWeightAveraging` has two gaps this subclass closes:

1. It averages BatchNorm's running statistics like weights. Those statistics were measured on the
   *live* weights; the averaged weights lag behind them and produce activations of another scale,
   so the averaged network is evaluated with the wrong normalisation. On study B's ``deep``
   (Conv -> ReLU -> BN) validation accuracy read 10% after each of the first two epochs. Here the
   statistics are measured again, with the averaged weights, on ``refresh_batches`` training
   batches (no augmentation, no gradients) before every validation; the checkpoint stores them.
2. Outside ``fit`` (``trainer.validate/test(ckpt_path=...)``) the parent restores the checkpoint's
   *live* weights and only swaps the averaged ones in for validation, so ``test`` would score the
   live weights. Here the checkpoint's ``state_dict`` (the averaged weights) is what every
   evaluation after training sees, as it is for ``evaluate.py``, which loads that same ``state_dict``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.trainer.states import TrainerFn
from torch.nn.modules.batchnorm import _BatchNorm


def refresh_batch_norm(pl_module: L.LightningModule, trainer: L.Trainer, batches: int,
                       loader: Iterable[Any] | None = None) -> int:
    """Recompute every BatchNorm's running mean/variance as the plain average over ``batches`` training batches.

    The batches come from ``loader``, by default the fit's own training loader. Only BatchNorm layers run in
    training mode (dropout stays off); returns the batches used.
    """
    norms = [m for m in pl_module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not norms or batches <= 0:
        return 0
    modes = {m: m.training for m in pl_module.modules()}
    momenta = {m: m.momentum for m in norms}
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the batches seen
    for module in pl_module.modules():
        module.training = isinstance(module, _BatchNorm)
    pl_module.training = True  # the wrapper's own train-time path (no evaluation-only test-time augmentation)
    used = 0
    try:
        with torch.no_grad():
            # The fit's own loader by default: a data module is not required.
            for batch in trainer.train_dataloader if loader is None else loader:
                if used >= batches:
                    break
                # Device transfer + the data module's batch hook; outside training steps it adds no augmentation.
                images, _ = trainer.strategy.batch_to_device(batch, dataloader_idx=0)
                pl_module(images)
                used += 1
    finally:
        for norm, momentum in momenta.items():
            norm.momentum = momentum
        for module, mode in modes.items():
            module.training = mode
    return used


def warmup_ema_multi_avg_fn(decay: float) -> Callable[[list[torch.Tensor], list[torch.Tensor], Any], None]:
    """EMA update whose decay grows as ``(1 + n) / (10 + n)`` up to ``decay`` (``n``: updates so far).

    A plain EMA starts from the initial weights and, at decay 0.999, still gives them ``0.999 ** n`` of its
    weight after ``n`` steps (62% after 3 short epochs of 157 steps), so short runs score a half-trained
    average. With the warm-up the average follows the weights early on and reaches ``decay`` after
    ``(10 * decay - 1) / (1 - decay)`` updates (8,990 at 0.999).

    Torch's ``AveragedModel`` calls this once per device and dtype group, not once per tensor, so reading
    ``n`` (a tensor, on the GPU a synchronisation) happens once per step.
    """
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"EMA decay must be in [0, 1], got {decay}.")

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: Any) -> None:
        n = float(num_averaged)
        rate = min(decay, (1.0 + n) / (10.0 + n))
        for average, value in zip(averaged, current, strict=True):
            average.copy_(rate * average + (1.0 - rate) * value)

    return update


class BatchNormEMA(EMAWeightAveraging):
    """EMA of the weights (Lightning's), with BatchNorm statistics refreshed for the averaged weights.

    Args:
        decay: EMA decay per optimizer step (0.999: a time constant of ~1,000 steps, 1.25 epochs of
            ``deep`` at batch 64).
        refresh_batches: training batches used to re-measure BatchNorm statistics before each validation.
        warmup: let the decay grow from 0.1 to ``decay`` over the first updates (:func:`warmup_ema_multi_avg_fn`);
            for short runs, whose plain average would still lean on the initial weights.
        kwargs: passed on to :class:`~lightning.pytorch.callbacks.EMAWeightAveraging`.
    """

    def __init__(self, decay: float = 0.999, refresh_batches: int = 200, warmup: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(decay=decay, **kwargs)
        self.refresh_batches = refresh_batches
        if warmup:  # the parent hands these to torch's AveragedModel when fit starts; multi_avg_fn replaces avg_fn
            del self._kwargs["avg_fn"]
            self._kwargs["multi_avg_fn"] = warmup_ema_multi_avg_fn(decay)

    @staticmethod
    def _fitting(trainer: L.Trainer) -> bool:
        return trainer.state.fn == TrainerFn.FITTING

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._fitting(trainer):
            return  # evaluating a checkpoint: its state_dict already holds the averaged weights
        super().on_validation_epoch_start(trainer, pl_module)  # the averaged weights now sit in pl_module
        if not trainer.sanity_checking and self._average_model is not None:
            refresh_batch_norm(pl_module, trainer, self.refresh_batches)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._fitting(trainer):
            super().on_validation_epoch_end(trainer, pl_module)  # refreshed statistics go back with the average

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        if self._fitting(trainer):
            super().on_load_checkpoint(trainer, pl_module, checkpoint)  # resuming: live and averaged weights
