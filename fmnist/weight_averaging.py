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

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.trainer.states import TrainerFn
from torch.nn.modules.batchnorm import _BatchNorm


def refresh_batch_norm(pl_module: L.LightningModule, trainer: L.Trainer, batches: int) -> int:
    """Recompute every BatchNorm's running mean/variance as the plain average over ``batches`` training batches.

    Only BatchNorm layers run in training mode (dropout stays off); returns the batches used.
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
            for batch in trainer.train_dataloader:  # the fit's own loader: a data module is not required
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


class BatchNormEMA(EMAWeightAveraging):
    """EMA of the weights (Lightning's), with BatchNorm statistics refreshed for the averaged weights.

    Args:
        decay: EMA decay per optimizer step (0.999: a time constant of ~1,000 steps, 1.25 epochs of
            ``deep`` at batch 64).
        refresh_batches: training batches used to re-measure BatchNorm statistics before each validation.
        kwargs: passed on to :class:`~lightning.pytorch.callbacks.EMAWeightAveraging`.
    """

    def __init__(self, decay: float = 0.999, refresh_batches: int = 200, **kwargs: Any) -> None:
        super().__init__(decay=decay, **kwargs)
        self.refresh_batches = refresh_batches

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
