"""The one LightningModule: any registered backbone, its loss, optimizer, schedule and metrics."""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from fmnist.errors import FmnistError
from fmnist.models import count_parameters, create_model, get_spec
from fmnist.serialization import weights_mismatch
from fmnist.training.cpu_tuning import CpuThreadPicker, retain_freed_memory
from fmnist.training.hard_examples import planned_training_steps
from fmnist.training.optimizers import MuonSGD, split_for_muon

_FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def class_weight_tensor(class_weights: dict[int, float] | None, num_classes: int) -> torch.Tensor | None:
    """``{6: 2.0}`` -> ``[1, 1, 1, 1, 1, 1, 2, 1, 1, 1]`` (study B weights Shirt x2)."""
    if not class_weights:
        return None
    weights = torch.ones(num_classes)
    for cls, weight in class_weights.items():
        if not 0 <= int(cls) < num_classes:
            raise FmnistError(f"class_weights names class {cls}, but classes are 0..{num_classes - 1}.")
        if weight <= 0:
            raise FmnistError(f"class_weights[{cls}] must be positive, got {weight}.")
        weights[int(cls)] = float(weight)
    return weights


def weight_fingerprint(model: torch.nn.Module) -> float:
    """A cheap scalar summary of all weights (sum of squares): equal fingerprints = (almost surely) equal weights."""
    with torch.no_grad():
        return float(sum(p.double().pow(2).sum() for p in model.parameters()))


class Classifier(L.LightningModule):
    """Image classifier around ``fmnist.models.create_model(model_name, **model_kwargs)``.

    Args:
        model_name: a registered model (``python train.py --list-models``).
        model_kwargs: options for the model builder (e.g. ``{"dropout": 0.0}`` for ``deep``).
        num_classes: output classes.
        optimizer: ``adam`` (study B: lr 1e-3, betas 0.9/0.999), ``adamw``, ``sgd`` (lr 0.01, momentum 0.9) or
            ``muon``: Muon (orthogonalised Nesterov steps, :mod:`fmnist.training.optimizers`) for the convolution
            filters at ``muon_lr`` / ``muon_momentum``, Nesterov SGD at ``lr`` / ``momentum`` for the rest.
        lr: learning rate; default 1e-3 for adam/adamw, 0.01 for sgd.
        scheduler: ``none``, ``plateau`` (ReduceLROnPlateau on val_loss, study B), ``cosine`` (per step,
            with ``warmup_epochs`` of linear warm-up) or ``onecycle``.
        plateau_factor, plateau_patience: ReduceLROnPlateau's. The patience (1: halve the rate after the
            second epoch without a better val_loss) must stay below EarlyStopping's (the studies: 3), or
            training stops before the rate is ever reduced -- what happened with 2 in our first runs.
        label_smoothing: cross-entropy label smoothing.
        class_weights: per-class loss weights, e.g. ``{6: 2.0}`` (study B: Shirt x2).
        channels_last: run the model in channels-last memory format. ``None`` (default): on when the
            trainer runs on the CPU (oneDNN's convolutions and max-pooling are faster in NHWC: ``deep``'s
            training step is ~20% cheaper), off elsewhere (GPUs keep the contiguous layout).
        compile: wrap the model in ``torch.compile`` (on the CPU it does not speed up the studies' CNNs).
        cpu_threads: intra-op threads while training on the CPU. ``None`` (default) leaves torch alone, so
            seeded runs stay bit-for-bit repeatable; an integer fixes the count for the fit; ``"auto"`` times a
            few batches every epoch with torch's count and with one thread and keeps the faster (see
            :class:`CpuThreadPicker`; worth it on a CPU shared with other jobs, but the float sums then
            depend on the load). torch's own count is restored when the fit ends.
        retain_cpu_memory: on the CPU, have glibc keep freed blocks for the next step instead of returning
            them to the kernel (:mod:`fmnist.training.cpu_tuning`: ``deep``'s step ~20% cheaper, evaluation ~2x). The
            process then keeps its peak memory until it exits. Changes speed only, never the numbers.
        flip_tta: outside training (validation, test, predict, reports), average the class probabilities
            of each image and its mirror image; for models trained with horizontal flips (our ``vggbn``).
            The output is then log-probabilities, which cross-entropy and softmax treat as logits.
        tta_shift: outside training, also average each view shifted by this many pixels up-left and down-right
            (reflect padding), as airbench's test-time augmentation: 3 views, 6 with ``flip_tta``; 0 = off.
    """

    def __init__(
        self,
        model_name: str = "deep",
        model_kwargs: dict[str, Any] | None = None,
        num_classes: int = 10,
        optimizer: Literal["adam", "adamw", "sgd", "muon"] = "adam",
        lr: float | None = None,
        betas: tuple[float, float] = (0.9, 0.999),
        momentum: float = 0.9,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        scheduler: Literal["none", "plateau", "cosine", "onecycle"] = "none",
        plateau_factor: float = 0.5,
        plateau_patience: int = 1,
        min_lr: float = 1e-6,
        warmup_epochs: int = 0,
        label_smoothing: float = 0.0,
        class_weights: dict[int, float] | None = None,
        channels_last: bool | None = None,
        compile: bool = False,
        cpu_threads: int | Literal["auto"] | None = None,
        retain_cpu_memory: bool = True,
        flip_tta: bool = False,
        tta_shift: int = 0,
        muon_lr: float = 0.24,
        muon_momentum: float = 0.6,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.spec = get_spec(model_name)
        if not 0.0 <= label_smoothing < 1.0:
            raise FmnistError(f"label_smoothing must be in [0, 1), got {label_smoothing}.")
        if lr is not None and lr <= 0:
            raise FmnistError(f"lr must be positive, got {lr}.")
        if tta_shift < 0:
            raise FmnistError(f"tta_shift must be 0 (off) or a number of pixels, got {tta_shift}.")
        if muon_lr <= 0 or not 0 <= muon_momentum < 1:
            raise FmnistError(f"muon_lr must be positive and muon_momentum in [0, 1); got {muon_lr} and "
                              f"{muon_momentum}.")
        self.model = create_model(model_name, num_classes=num_classes, **(model_kwargs or {}))
        self.channels_last = False  # resolved: ``None`` becomes True/False in ``setup`` once the device is known
        if channels_last:
            self.use_channels_last(True)
        # Kept out of the module tree (plain __dict__ entry) so checkpoints hold only ``model.*`` keys.
        self.__dict__["_forward_model"] = torch.compile(self.model) if compile else self.model
        weights = class_weight_tensor(class_weights, num_classes)
        self.register_buffer("class_weight", weights if weights is not None else torch.ones(num_classes),
                             persistent=False)
        self.use_class_weight = weights is not None
        metrics = MetricCollection({
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "macro_f1": MulticlassF1Score(num_classes, average="macro"),
        })
        self.train_metrics = metrics.clone(prefix="train_")
        # Training loss and metrics are accumulated per step and logged once per epoch (same values as
        # ``self.log(..., on_epoch=True)`` per step, without its per-call bookkeeping on every batch).
        self.train_loss_mean = MeanMetric()
        self.val_metrics = metrics.clone(prefix="val_")
        self.test_metrics = metrics.clone(prefix="test_")
        self.test_per_class = MulticlassAccuracy(num_classes, average=None)
        self.initial_fingerprint: float | None = None
        spec = get_spec(model_name)
        # One blank image: Lightning's model summary runs it to show each layer's FLOPs and shapes (else "0").
        self.example_input_array = torch.zeros(1, spec.channels, spec.input_size, spec.input_size)
        self.thread_picker = CpuThreadPicker(cpu_threads)

    def use_channels_last(self, enabled: bool) -> None:
        """Switch the model's (and its inputs') memory format; parameters stay the same objects."""
        self.model.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)
        self.channels_last = enabled

    def setup(self, stage: str) -> None:
        if self._trainer is None:
            return
        on_cpu = self.trainer.strategy.root_device.type == "cpu"
        if self.hparams.channels_last is None:
            self.use_channels_last(on_cpu)
        if on_cpu and self.hparams.get("retain_cpu_memory", True):
            retain_freed_memory()

    def on_fit_start(self) -> None:
        # Recorded so K-fold runs can prove every fold starts from fresh weights, not the last fold's.
        if self.initial_fingerprint is None:
            self.initial_fingerprint = weight_fingerprint(self.model)
        self.thread_picker.fit_start(on_cpu=self.trainer.strategy.root_device.type == "cpu")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["initial_weight_fingerprint"] = self.initial_fingerprint
        # The evaluator scores a checkpoint in the precision it was trained and tested in (bf16 autocast by default
        # on CPUs with native bf16), so its reports reproduce the run's own test numbers.
        checkpoint["training_precision"] = str(self.trainer.precision)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Called before Lightning loads the weights: a checkpoint of another model or class count gets one
        # sentence here instead of load_state_dict's list of every missing and unexpected key.
        problem = weights_mismatch(self.state_dict(), checkpoint.get("state_dict", {}))
        if problem:
            saved = (checkpoint.get("hyper_parameters") or {})
            raise FmnistError(
                f"the checkpoint's weights do not fit {self.hparams.model_name} with {self.hparams.num_classes} "
                f"classes (it was saved by {saved.get('model_name', 'an unknown model')} with "
                f"{saved.get('num_classes', '?')} classes: {problem}); pass the matching --model / config, or "
                f"evaluate it with `python evaluate.py CHECKPOINT`, which builds the checkpoint's own model.")
        # A resumed run keeps the fingerprint of the weights it started from, not of the resumed ones.
        self.initial_fingerprint = checkpoint.get("initial_weight_fingerprint", self.initial_fingerprint)

    def on_fit_end(self) -> None:
        self.thread_picker.fit_end()

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self.thread_picker.batch_start(batch_idx)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.thread_picker.batch_end(batch_idx)

    @property
    def trainable_parameters(self) -> int:
        return count_parameters(self.model)

    @property
    def test_time_views(self) -> int:
        """How many views of each image :meth:`view_logits` scores outside training: 1, x2 with flip TTA, x3
        with shift TTA (in training always 1)."""
        if self.training:
            return 1
        return (2 if self.hparams.get("flip_tta") else 1) * (3 if self.hparams.get("tta_shift") else 1)

    def views(self, x: torch.Tensor) -> torch.Tensor:
        """The test-time views of a batch, stacked along the batch axis: ``[views * N, C, H, W]``."""
        if self.training:
            return x
        if self.hparams.get("flip_tta"):
            x = torch.cat([x, torch.flip(x, dims=[-1])])
        shift = self.hparams.get("tta_shift") or 0
        if shift:
            h, w = x.shape[-2:]
            padded = F.pad(x, (shift,) * 4, mode="reflect")
            x = torch.cat([x, padded[..., :h, :w], padded[..., 2 * shift:, 2 * shift:]])
        return x

    def view_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The network's raw logits for each test-time view, ``[views, N, C]``, in one forward pass.

        Scores that need true logits (energy, max-logit) or per-image features (Mahalanobis) read these,
        because :meth:`forward` returns log-probabilities when it averages views.
        """
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        logits = self._forward_model(self.views(x))
        return logits.reshape(self.test_time_views, -1, *logits.shape[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        views = self.view_logits(x)
        if len(views) == 1:
            return views[0]
        probs = torch.softmax(views.float(), dim=-1).mean(0)
        return torch.log(probs).clamp_min(-100.0)

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y, weight=self.class_weight if self.use_class_weight else None,
                               label_smoothing=self.hparams.label_smoothing)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        x, y = batch
        logits = self(x)
        loss = self._loss(logits, y)
        self.train_metrics.update(logits.detach(), y)
        self.train_loss_mean.update(loss.detach(), weight=len(y))
        # The logits travel to the callbacks too: FocusOnHardExamples scores each image from them.
        return {"loss": loss, "logits": logits.detach()}

    def on_train_epoch_start(self) -> None:
        self.train_loss_mean.reset()
        self.train_metrics.reset()
        self.thread_picker.epoch_start(self.trainer.num_training_batches)

    def on_train_epoch_end(self) -> None:
        # torchmetrics' compute() already syncs across processes (DDP): every rank logs the same values.
        if self.train_loss_mean.update_count:
            self.log("train_loss", self.train_loss_mean.compute(), prog_bar=True, sync_dist=True)
            self.log_dict(self.train_metrics.compute(), prog_bar=False, sync_dist=True)
        self.train_loss_mean.reset()
        self.train_metrics.reset()

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str, metrics: MetricCollection) -> None:
        x, y = batch
        logits = self(x)
        # Unweighted loss for monitoring, so early stopping compares like with like across class weightings.
        loss = F.cross_entropy(logits, y)
        metrics.update(logits, y)
        if stage == "test":
            self.test_per_class.update(logits, y)
        self.log(f"{stage}_loss", loss, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=len(y))
        self.log_dict(metrics, on_epoch=True, prog_bar=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_metrics)

    def on_test_epoch_end(self) -> None:
        per_class = self.test_per_class.compute()
        names = self.class_names
        for index, value in enumerate(per_class):
            self.log(f"test_acc_class/{names[index]}", value, sync_dist=False)
        self.test_per_class.reset()

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return torch.softmax(self(x), dim=1)

    @property
    def class_names(self) -> tuple[str, ...]:
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        names = getattr(datamodule, "class_names", None)
        return tuple(names) if names else tuple(str(i) for i in range(self.hparams.num_classes))

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise FmnistError(f"model {hp.model_name!r} has no trainable parameters (is everything frozen?).")
        if hp.optimizer == "sgd":
            lr = hp.lr or 0.01
            optimizer = torch.optim.SGD(params, lr=lr, momentum=hp.momentum, nesterov=hp.nesterov,
                                        weight_decay=hp.weight_decay)
        elif hp.optimizer == "muon":
            lr = hp.lr or 0.01
            filters, others = split_for_muon(self.model.named_parameters())
            groups = [{"params": filters, "lr": hp.muon_lr, "momentum": hp.muon_momentum, "muon": True,
                       "weight_decay": 0.0}] if filters else []
            groups += [{"params": others, "lr": lr, "momentum": hp.momentum, "weight_decay": hp.weight_decay}
                       ] if others else []
            optimizer = MuonSGD(groups, lr=lr)
        else:
            lr = hp.lr or 1e-3
            cls = torch.optim.AdamW if hp.optimizer == "adamw" else torch.optim.Adam
            # On the CPU, torch's default is a Python loop of ~12 ops per parameter tensor (~0.5 ms per
            # step for ``deep``); the fused kernel does the same update in one op. GPUs keep their default.
            fused = all(p.device.type == "cpu" and p.dtype in _FUSED_DTYPES for p in params)
            optimizer = cls(params, lr=lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay,
                            fused=fused or None)
        if hp.scheduler == "none":
            return optimizer
        if hp.scheduler == "plateau":
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=hp.plateau_factor, patience=hp.plateau_patience, min_lr=hp.min_lr)
            return {"optimizer": optimizer,
                    "lr_scheduler": {"scheduler": scheduler, "monitor": "val_loss", "interval": "epoch"}}
        total = planned_training_steps(self.trainer)  # fewer steps when later epochs train on a subset
        if hp.scheduler == "onecycle":
            # Each group peaks at its own rate (Muon's filters and SGD's biases differ); Muon keeps its momentum.
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=[group["lr"] for group in optimizer.param_groups], total_steps=total,
                cycle_momentum=hp.optimizer != "muon")
        else:
            steps_per_epoch = max(1, total // max(1, self.trainer.max_epochs or 1))
            warmup = min(hp.warmup_epochs * steps_per_epoch, max(0, total - 1))
            cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total - warmup),
                                                                eta_min=hp.min_lr)
            if warmup:
                linear = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters=warmup)
                scheduler = torch.optim.lr_scheduler.SequentialLR(optimizer, [linear, cosine], milestones=[warmup])
            else:
                scheduler = cosine
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
