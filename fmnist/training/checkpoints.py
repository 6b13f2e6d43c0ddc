"""From a run folder or checkpoint file to a ready-to-use model with its exact input transform.

Evaluation, Grad-CAM and photo prediction all start here, so they feed a model the same
normalization / size / channels it was trained with (read from the checkpoint's saved
data-module hyperparameters and state).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fmnist.data.sources import dataset_info
from fmnist.data.transforms import InputTransform, to_unit_float
from fmnist.errors import FmnistError
from fmnist.runs import resolve_checkpoint, run_dir_of
from fmnist.serialization import read_checkpoint, weights_mismatch
from fmnist.training.module import Classifier
from fmnist.training.precision import FLOAT32, MIXED_PRECISION_DTYPES


@dataclass
class TrainedModel:
    module: Classifier
    transform: InputTransform
    model_name: str
    dataset: str
    checkpoint: Path
    run_dir: Path | None
    data_hparams: dict[str, Any] = field(default_factory=dict)  # the training data module's settings
    precision: str = FLOAT32  # the Trainer's precision when the checkpoint was written (older ones: float32)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast as in training (bf16-mixed, 16-mixed) or nothing, so scores match the run's own test."""
        dtype = MIXED_PRECISION_DTYPES.get(self.precision)
        device = next(self.module.parameters()).device.type
        return torch.autocast(device, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    @property
    def class_names(self) -> tuple[str, ...]:
        return dataset_info(self.dataset).class_names

    @property
    def network(self) -> nn.Module:
        """Input transform + backbone as one module taking ``[N, 1, 28, 28]`` in ``[0, 1]`` (for Captum)."""
        return nn.Sequential(self.transform, self.module.model).eval()

    @torch.no_grad()
    def predict_proba(self, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """Class probabilities ``[N, C]`` for float images ``[N, 1, 28, 28]`` in ``[0, 1]`` (or uint8)."""

        self.module.eval()
        device = next(self.module.parameters()).device
        outputs = []
        for start in range(0, len(images), batch_size):
            x = to_unit_float(images[start:start + batch_size]).to(device)
            with self.autocast():
                logits = self.module(self.transform(x))
            outputs.append(torch.softmax(logits.float(), dim=1).cpu())
        return torch.cat(outputs) if outputs else torch.empty(0, self.module.hparams.num_classes)


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` -> the GPU when there is one; a device this machine lacks is the user's mistake, said so."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise FmnistError(f"--device {device!r} is not a device; use cpu, cuda, cuda:N or auto.") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise FmnistError(f"--device {device} asks for a CUDA GPU, but torch sees none on this machine; "
                              f"use --device cpu (or auto, which takes a GPU when there is one).")
        if resolved.index is not None and resolved.index >= count:
            raise FmnistError(f"--device {device} asks for GPU {resolved.index}, but this machine has {count}; "
                              f"use cuda:0 ... cuda:{count - 1}.")
    elif resolved.type not in ("cpu", "mps"):
        raise FmnistError(f"--device {device} is not supported here; use cpu, cuda, cuda:N or auto.")
    return resolved


def load_trained(path: str | Path, map_location: str | torch.device = "cpu") -> TrainedModel:
    """Load a trained model (run folder or ``.ckpt``) in eval mode with its input transform."""
    map_location = resolve_device(map_location)
    checkpoint = resolve_checkpoint(path)
    raw = read_checkpoint(checkpoint, map_location)
    if "state_dict" not in raw or "hyper_parameters" not in raw:
        raise FmnistError(f"{checkpoint} is not a Lightning checkpoint of fmnist's Classifier.")
    hparams = dict(raw["hyper_parameters"])
    if not isinstance(hparams.get("model_name"), str):
        raise FmnistError(f"{checkpoint} does not say which model it holds (no model_name in its "
                          f"hyper_parameters), so it cannot be rebuilt; use a checkpoint written by train.py.")
    kwargs = dict(hparams.get("model_kwargs") or {})
    kwargs.pop("base_checkpoint", None)  # weights come from the state dict, no need for the MNIST base file
    hparams["model_kwargs"] = kwargs
    hparams["compile"] = False
    module = Classifier(**{k: v for k, v in hparams.items() if k in Classifier.__init__.__code__.co_varnames})
    problem = weights_mismatch(module.state_dict(), raw["state_dict"])
    if problem:
        raise FmnistError(f"{checkpoint}'s weights do not fit the model it names ({hparams['model_name']}, "
                          f"{module.hparams.num_classes} classes): {problem}; the file was changed or written by "
                          f"another version of the model.")
    module.load_state_dict(raw["state_dict"], strict=True)
    module.eval().to(map_location)
    data_hp = raw.get("datamodule_hyper_parameters", {})
    # The data module's state (mean/std) under its class name, today's or the one it had before.
    state = raw.get("ImageDataModule") or raw.get("FashionMNISTDataModule") or {}
    transform = InputTransform(state.get("mean", 0.0), state.get("std", 1.0), data_hp.get("image_size", 28),
                               data_hp.get("channels", 1))
    dataset = data_hp.get("dataset", "fashion")
    classes = len(dataset_info(dataset).class_names)
    if module.hparams.num_classes != classes:
        raise FmnistError(f"{checkpoint} has {module.hparams.num_classes} outputs but its dataset {dataset!r} has "
                          f"{classes} classes; it cannot be evaluated as a {dataset} classifier.")
    return TrainedModel(module, transform, hparams["model_name"], dataset, checkpoint,
                        run_dir_of(checkpoint), dict(data_hp), str(raw.get("training_precision") or FLOAT32))
