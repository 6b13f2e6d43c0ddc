"""Watch where the model looks while it learns: explanation maps of fixed validation images in TensorBoard.

Add it like any other Lightning callback, in a config::

    trainer:
      callbacks:
        - class_path: fmnist.interpret.callback.ExplanationLogger
          init_args: {every_n_epochs: 2, num_images: 8, method: hirescam}

or on the command line (``--trainer.callbacks+=fmnist.interpret.callback.ExplanationLogger
--trainer.callbacks.every_n_epochs=2``). Every ``every_n_epochs`` epochs, after validation, it draws
the same validation images (round-robin over the classes, so every class shows up) with their maps
into TensorBoard's *Images* tab (``explanations/<method>``) and logs the share of blank maps as
a scalar (``explanations/<method>_blank_rate``). Lightning asked for this in its issue #4257.
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from fmnist.errors import FmnistError
from fmnist.figures.explanations import explained_items, grid_figure
from fmnist.interpret.gradcam import attribute
from fmnist.interpret.methods import DEFAULT_METHOD, get_method


def round_robin(labels: torch.Tensor, count: int) -> list[int]:
    """``count`` indices: the first image of each class, then the second of each, ... (fixed, class-balanced)."""
    per_class = [torch.nonzero(labels == cls).flatten().tolist() for cls in torch.unique(labels).tolist()]
    chosen: list[int] = []
    depth = 0
    while len(chosen) < count and any(depth < len(pool) for pool in per_class):
        chosen += [pool[depth] for pool in per_class if depth < len(pool)]
        depth += 1
    return chosen[:count]


class ExplanationLogger(L.Callback):
    """Logs the explanation maps of a fixed set of validation images to TensorBoard every N epochs.

    Args:
        every_n_epochs: log after every N-th epoch (1: every epoch).
        num_images: validation images shown (chosen once, round-robin over the classes).
        method: one of ``fmnist.interpret.methods.METHODS`` (default HiResCAM).
        layer: layer the CAM methods attach to (default: the model's, see docs/gradcam.md).
        per_row: images per row of the logged grid.
        tag: TensorBoard tag prefix.
    """

    def __init__(self, every_n_epochs: int = 1, num_images: int = 8, method: str = DEFAULT_METHOD,
                 layer: str | None = None, per_row: int = 4, tag: str = "explanations") -> None:
        super().__init__()
        if every_n_epochs < 1:
            raise FmnistError(f"ExplanationLogger: every_n_epochs must be at least 1, got {every_n_epochs}.")
        if num_images < 1:
            raise FmnistError(f"ExplanationLogger: num_images must be at least 1, got {num_images}.")
        self.method = get_method(method)
        self.every_n_epochs, self.num_images, self.layer = every_n_epochs, num_images, layer
        self.per_row, self.tag = per_row, tag
        self.logged_epochs: list[int] = []
        self._images: torch.Tensor | None = None
        self._labels: torch.Tensor | None = None
        self._titles: list[str] = []

    @staticmethod
    def _writer(trainer: L.Trainer):
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                return logger.experiment
        return None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._writer(trainer) is None:
            raise FmnistError("ExplanationLogger logs to TensorBoard, but this trainer has no TensorBoardLogger "
                              "(trainer.logger is off or another logger); add one or remove the callback.")
        datamodule = trainer.datamodule
        val_set = getattr(datamodule, "val_set", None)
        if val_set is None or not hasattr(datamodule, "input_transform"):
            raise FmnistError("ExplanationLogger needs fmnist's ImageDataModule (its val_set and "
                              "input_transform) to pick validation images; train with it or remove the callback.")
        chosen = round_robin(val_set.labels, self.num_images)
        self._images = val_set.images[chosen].clone()
        self._labels = val_set.labels[chosen].clone()
        self._titles = [f"val #{int(val_set.indices[i])}" for i in chosen]

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # In Lightning 2 this hook runs after the epoch's validation loop: the maps show the validated weights.
        epoch = trainer.current_epoch
        if (epoch + 1) % self.every_n_epochs or not trainer.is_global_zero or self._images is None:
            return
        writer = self._writer(trainer)
        datamodule = trainer.datamodule
        backbone = getattr(pl_module, "model", pl_module)
        model_name = pl_module.hparams.get("model_name") if hasattr(pl_module, "hparams") else None
        result = attribute(backbone, self._images, method=self.method.name, transform=datamodule.input_transform,
                           model_name=model_name, layer=self.layer)
        names = getattr(datamodule, "class_names", None) or [str(c) for c in range(result.probs.shape[1])]
        items = explained_items(result, self._images, names, self._labels.tolist(), self._titles)
        title = f"epoch {epoch}: {self.method.title}" + (f" at {result.layer}" if result.layer else "")
        figure = grid_figure(items, self.per_row, title)
        writer.add_figure(f"{self.tag}/{self.method.name}", figure, global_step=trainer.global_step, close=True)
        writer.add_scalar(f"{self.tag}/{self.method.name}_blank_rate", float(result.blank.float().mean()),
                          global_step=trainer.global_step)
        self.logged_epochs.append(epoch)
