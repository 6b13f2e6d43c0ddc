"""A model loaded once and scored on any uint8 images: probabilities, logits and penultimate features.

Corrupted splits, out-of-distribution sets and ensembles score one model on many image sets that
are not a registered dataset's split. A :class:`Scorer` keeps the loaded model (a run's checkpoint
or a fitted scikit-learn baseline) and turns each set into the evaluator's :class:`Predictions`.
Logits (energy and max-logit OOD scores) and the input of the final linear layer (Mahalanobis)
come along where the model has them. With a temperature (see :mod:`fmnist.evaluation.calibration`)
every probability it returns is the temperature-scaled one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fmnist import baselines as B
from fmnist.data.datamodule import ImageDataModule
from fmnist.data.sources import DATASETS, dataset_info, load_dataset
from fmnist.data.transforms import to_unit_float
from fmnist.errors import FmnistError
from fmnist.evaluation.calibration import load_temperature, temper
from fmnist.models import count_parameters
from fmnist.predictions import Predictions
from fmnist.runs import run_tag
from fmnist.training.api import Run
from fmnist.training.checkpoints import TrainedModel, load_trained


@dataclass
class Outputs:
    """What a model says about a batch of images.

    ``logits`` are scores whose softmax is ``probs`` (CNNs), or a baseline's decision scores when it
    has them; ``features`` are the inputs of a CNN's final linear layer. Either may be ``None``.
    """

    probs: np.ndarray  # float32 [N, C]
    logits: np.ndarray | None = None  # float32 [N, C]
    features: np.ndarray | None = None  # float32 [N, D]

    def __len__(self) -> int:
        return len(self.probs)


@dataclass
class Scorer(ABC):
    """One loaded model: ``outputs(images)`` for any uint8 ``[N, 28, 28]`` images."""

    name: str  # report name: ``deep_v0``, ``logreg``
    model: str  # registry name: ``deep``, ``logreg``
    dataset: str  # the dataset it was trained on (its class names are the output names)
    meta: dict[str, Any] = field(default_factory=dict)  # facts copied into every Predictions it makes
    temperature: float | None = None  # set: probabilities are softmax(logits / T)

    @property
    def class_names(self) -> tuple[str, ...]:
        return dataset_info(self.dataset).class_names

    @abstractmethod
    def _outputs(self, images: np.ndarray, features: bool) -> Outputs:
        """Untempered outputs."""

    def outputs(self, images: np.ndarray, *, features: bool = False) -> Outputs:
        """Probabilities (temperature-scaled when a temperature is set), logits and, if asked, features."""
        images = _check_images(images)
        out = self._outputs(images, features)
        if self.temperature is not None:
            out = Outputs(temper(out.probs, self.temperature), out.logits, out.features)
        return out

    @abstractmethod
    def split(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(images, labels, indices)`` of the model's own ``train`` or ``val`` split (indices into the 60,000)."""

    def predictions(self, images: np.ndarray, labels: np.ndarray, *, dataset: str, split: str = "test",
                    indices: np.ndarray | None = None, outputs: Outputs | None = None,
                    keep_images: bool = True) -> Predictions:
        """The evaluator's :class:`Predictions` for a labelled image set (``dataset`` names the labels' classes)."""
        outputs = outputs if outputs is not None else self.outputs(images)
        class_names = dataset_info(dataset).class_names if dataset in DATASETS else self.class_names
        meta = {**self.meta, "temperature": self.temperature}
        return Predictions(probs=outputs.probs, labels=labels,
                           indices=np.arange(len(labels)) if indices is None else indices, dataset=dataset,
                           model=self.model, class_names=class_names, split=split,
                           images=np.asarray(images) if keep_images else None,
                           output_names=self.class_names if tuple(self.class_names) != tuple(class_names) else None,
                           meta=meta)


def _check_images(images: Any) -> np.ndarray:
    array = images.numpy() if hasattr(images, "numpy") else np.asarray(images)
    if array.dtype != np.uint8 or array.ndim != 3:
        raise FmnistError(f"images must be uint8 [N, H, W], got {array.dtype} {list(array.shape)}.")
    return array


# -- trained networks --------------------------------------------------------------------------------
@dataclass
class CheckpointScorer(Scorer):
    trained: TrainedModel | None = None
    batch_size: int = 1000

    def _outputs(self, images: np.ndarray, features: bool) -> Outputs:
        module, transform = self.trained.module.eval(), self.trained.transform
        device = next(module.parameters()).device
        captured: list[torch.Tensor] = []
        head = _last_linear(module.model) if features else None
        hook = head.register_forward_pre_hook(
            lambda _, inputs: captured.append(inputs[0].detach().float().cpu())) if head else None
        probs, logits, feats = [], [], []
        try:
            with torch.no_grad():
                for start in range(0, len(images), self.batch_size):
                    x = to_unit_float(torch.from_numpy(images[start:start + self.batch_size])).to(device)
                    # With flip TTA each view has its own logits and features: probabilities are averaged
                    # as forward() does, logits and features too, so energy and Mahalanobis see one
                    # row per image (forward()'s log-probabilities would make every energy 0).
                    with self.trained.autocast():  # the run's own precision: reports match its metrics.json
                        views = module.view_logits(transform(x))
                    views = views.float().cpu()
                    probs.append(torch.softmax(views, dim=-1).mean(0))
                    logits.append(views.mean(0))
                    if captured:
                        feats.append(torch.cat(captured).flatten(1).reshape(len(views), len(x), -1).mean(0))
                        captured.clear()
        finally:
            if hook is not None:
                hook.remove()
        empty = torch.empty(0, len(self.class_names))
        p, z = (torch.cat(probs), torch.cat(logits)) if probs else (empty, empty)
        if features and not feats and len(images):
            raise FmnistError(f"{self.name}: the network has no final linear layer to take features from.")
        return Outputs(p.numpy(), z.numpy(), torch.cat(feats).numpy() if feats else None)

    def split(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        data_hp = self.trained.data_hparams
        data_dir = self.meta.get("data_dir")
        data = load_dataset(self.dataset, data_dir)
        module = ImageDataModule.from_hparams(data_hp, dataset=self.dataset, data_dir=data_dir)
        train_idx, val_idx = module.split_indices(data.train_labels)
        indices = {"train": train_idx, "val": val_idx}.get(split)
        if indices is None:
            raise FmnistError(f"Unknown split {split!r}; choose train or val.")
        return data.train_images.numpy()[indices], data.train_labels.numpy()[indices], np.asarray(indices)


def _last_linear(model: nn.Module) -> nn.Linear | None:
    """The network's final ``nn.Linear`` (its input is the penultimate representation)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


# -- scikit-learn baselines --------------------------------------------------------------------------
@dataclass
class BaselineScorer(Scorer):
    fitted: B.FittedBaseline | None = None
    data: B.BaselineData | None = None
    n_jobs: int | None = -1

    def _outputs(self, images: np.ndarray, features: bool) -> Outputs:
        X = B.flatten(images)
        probs = B.predict_proba(self.fitted, X, num_classes=len(self.class_names), n_jobs=self.n_jobs)
        logits = None
        if hasattr(self.fitted.estimator, "decision_function") and len(X):
            logits = B.raw_scores(self.fitted, X, self.n_jobs).astype(np.float32) / (self.fitted.temperature or 1.0)
        return Outputs(probs, logits, None)

    def split(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if split == "val":
            return np.asarray(self.data.val_images), self.data.y_val, self.data.val_idx
        if split == "train":
            images = load_dataset(self.dataset, self.meta.get("data_dir")).train_images.numpy()
            return images[self.data.train_idx], self.data.y_train, self.data.train_idx
        raise FmnistError(f"Unknown split {split!r}; choose train or val.")


# -- loading -----------------------------------------------------------------------------------------
def load_scorer(target: str | Path | Run, *, data_dir: str | None = None, device: str = "cpu",
                batch_size: int = 1000, temperature: bool = False, params: dict[str, Any] | None = None,
                train_subset: int | None = None, n_jobs: int | None = -1, refit: bool = False,
                artifacts_dir: str | Path | None = None, log: Any = print) -> Scorer:
    """A trained run (a :class:`Run`, run folder or ``.ckpt``) or a registered baseline's name, loaded once.

    ``temperature=True`` applies the temperature saved by ``evaluate.py calibrate`` (an error when none is).
    """
    if isinstance(target, Run):
        target = target.dir or target.checkpoint
        if target is None:
            raise FmnistError("this run kept no folder or checkpoint (logger and checkpointing off); nothing to score.")
    if isinstance(target, str) and target in B.BASELINES and not Path(target).exists():
        scorer: Scorer = _baseline_scorer(target, data_dir=data_dir, params=params, train_subset=train_subset,
                                          n_jobs=n_jobs, refit=refit, artifacts_dir=artifacts_dir, log=log)
    else:
        if params or train_subset or refit:
            raise FmnistError("--param, --train-subset and --refit apply to baselines only.")
        if not Path(target).exists():
            raise FmnistError(f"{target} is neither a run folder, a checkpoint nor a baseline "
                              f"({', '.join(B.BASELINES)}); pass e.g. lightning_logs/deep/version_0.")
        scorer = _checkpoint_scorer(target, data_dir=data_dir, device=device, batch_size=batch_size)
    if temperature:
        scorer.temperature = load_temperature(scorer.meta, scorer.name)
    return scorer


def _checkpoint_scorer(path: str | Path, *, data_dir: str | None, device: str, batch_size: int) -> CheckpointScorer:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    trained = load_trained(path, map_location=device)
    if data_dir is None and trained.data_hparams.get("data_dir") and Path(trained.data_hparams["data_dir"]).is_dir():
        data_dir = trained.data_hparams["data_dir"]  # where the run found its data
    tag = run_tag(trained.model_name, trained.checkpoint, trained.run_dir)
    meta = {"kind": "cnn", "run": tag, "checkpoint": str(trained.checkpoint),
            "run_dir": str(trained.run_dir) if trained.run_dir else None, "trained_on": trained.dataset,
            "trainable_params": count_parameters(trained.module.model), "data_dir": data_dir}
    return CheckpointScorer(name=tag, model=trained.model_name, dataset=trained.dataset, meta=meta, trained=trained,
                            batch_size=batch_size)


def _baseline_scorer(name: str, *, data_dir: str | None, params: dict[str, Any] | None, train_subset: int | None,
                     n_jobs: int | None, refit: bool, artifacts_dir: str | Path | None, log: Any) -> BaselineScorer:
    spec = B.get_baseline(name)
    resolved = B.resolve_params(spec, params)
    data = B.baseline_data("fashion", data_dir, train_subset)
    fitted = B.fit_or_load(name, resolved, data, train_subset=train_subset, n_jobs=n_jobs, refit=refit,
                           artifacts_dir=artifacts_dir or B.ARTIFACTS_DIR, log=log)
    meta = {"kind": "baseline", "run": name, "estimator": type(fitted.estimator).__name__, "params": resolved,
            "artifact": str(fitted.path) if fitted.path else None, "trained_on": "fashion",
            "trainable_params": fitted.n_parameters, "data_dir": data_dir}
    return BaselineScorer(name=name, model=name, dataset="fashion", meta=meta, fitted=fitted, data=data, n_jobs=n_jobs)
