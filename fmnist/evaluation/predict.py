"""Producing predictions: a trained run or checkpoint, or a scikit-learn baseline, on a dataset's split.

:func:`evaluate` is the Python API the CLI, the reproduce driver and the tests call.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from fmnist import baselines as B
from fmnist.data.datamodule import ImageDataModule
from fmnist.data.sources import dataset_info, load_dataset
from fmnist.errors import FmnistError
from fmnist.models import count_parameters
from fmnist.predictions import Predictions
from fmnist.runs import read_metrics, run_tag
from fmnist.training.api import Run
from fmnist.training.checkpoints import load_trained


# -- producing predictions: deep checkpoints --------------------------------------------------------
def predict_checkpoint(path: str | Path, *, dataset: str | None = None, split: str = "test",
                       data_dir: str | None = None, device: str = "cpu",
                       batch_size: int = 1000) -> Predictions:
    """Predictions of a trained model (run folder or ``.ckpt``) on ``dataset``'s ``split``.

    ``split="val"`` rebuilds the training run's own stratified validation split from the
    data-module hyperparameters saved in the checkpoint, so the indices match training.
    """
    import torch

    if split not in ("test", "val"):
        raise FmnistError(f"Unknown split {split!r}; choose test or val.")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    started = time.perf_counter()
    trained = load_trained(path, map_location=device)
    data_hp = trained.data_hparams
    dataset = dataset or trained.dataset
    dataset_info(dataset)
    if data_dir is None and data_hp.get("data_dir") and Path(data_hp["data_dir"]).is_dir():
        data_dir = data_hp["data_dir"]  # where the run found its data
    load_seconds = time.perf_counter() - started
    data = load_dataset(dataset, data_dir)
    if split == "test":
        images, labels = data.test_images, data.test_labels
        indices = np.arange(len(labels))
    else:
        _, indices = ImageDataModule.from_hparams(data_hp, dataset=dataset, data_dir=data_dir).split_indices(
            data.train_labels)
        index = torch.as_tensor(indices, dtype=torch.long)
        images, labels = data.train_images[index], data.train_labels[index]
    started = time.perf_counter()
    probs = trained.predict_proba(images, batch_size=batch_size)
    predict_seconds = time.perf_counter() - started
    model_classes = trained.class_names
    class_names = data.class_names
    run_metrics = read_metrics(trained.run_dir) if trained.run_dir else None
    tag = run_tag(trained.model_name, trained.checkpoint, trained.run_dir)
    meta: dict[str, Any] = {
        "kind": "cnn", "run": tag, "checkpoint": str(trained.checkpoint),
        "run_dir": str(trained.run_dir) if trained.run_dir else None, "trained_on": trained.dataset,
        "trainable_params": count_parameters(trained.module.model),
        "timing": {"load_seconds": round(load_seconds, 3), "predict_seconds": round(predict_seconds, 3),
                   "device": str(device)},
        "data_source": str(data.source),
    }
    if run_metrics:
        meta["train_seconds"] = run_metrics.get("wall_seconds")
        if dataset == trained.dataset and split == "test" and run_metrics.get("test_acc") is not None:
            meta["training_test_acc"] = run_metrics.get("test_acc")
            meta["training_test_macro_f1"] = run_metrics.get("test_macro_f1")
    return Predictions(probs=probs, labels=labels, indices=indices, dataset=dataset, model=trained.model_name,
                       class_names=class_names, split=split, images=images.numpy(),
                       output_names=model_classes if tuple(model_classes) != tuple(class_names) else None,
                       meta=meta)


# -- producing predictions: scikit-learn baselines --------------------------------------------------
def predict_baseline(name: str, *, params: dict[str, Any] | None = None, dataset: str = "fashion",
                     split: str = "test", data_dir: str | None = None, train_subset: int | None = None,
                     n_jobs: int | None = -1, refit: bool = False, calibration_size: int = 2000,
                     artifacts_dir: str | Path | None = None, log: Any = print) -> Predictions:
    """Fit (or reload) baseline ``name`` on the training split and predict ``split``."""

    spec = B.get_baseline(name)
    resolved = B.resolve_params(spec, params)
    if split not in ("test", "val"):
        raise FmnistError(f"Unknown split {split!r}; choose test or val.")
    data = B.baseline_data(dataset, data_dir, train_subset)
    fitted = B.fit_or_load(name, resolved, data, train_subset=train_subset, calibration_size=calibration_size,
                           n_jobs=n_jobs, refit=refit, artifacts_dir=artifacts_dir or B.ARTIFACTS_DIR, log=log)
    X, y, indices, images = data.split(split)
    started, cpu_started = time.perf_counter(), time.process_time()
    probs = B.predict_proba(fitted, X, num_classes=len(data.class_names), n_jobs=n_jobs)
    predict_seconds, predict_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    meta: dict[str, Any] = {
        "kind": "baseline", "estimator": type(fitted.estimator).__name__, "params": resolved,
        "overrides": params or {}, "train_subset": train_subset, "n_train": fitted.n_train,
        "artifact": str(fitted.path) if fitted.path else None, "reloaded": fitted.loaded,
        "trainable_params": fitted.n_parameters, "train_seconds": round(fitted.fit_seconds, 3),
        "temperature": fitted.temperature, "calibration_size": fitted.calibration_size,
        "timing": {"fit_seconds": round(fitted.fit_seconds, 3), "predict_seconds": round(predict_seconds, 3),
                   "calibration_seconds": round(fitted.extra.get("calibration_seconds", 0.0), 3),
                   "fit_cpu_seconds": _round(fitted.extra.get("fit_cpu_seconds")),
                   "predict_cpu_seconds": round(predict_cpu, 3), "n_jobs": n_jobs},
        "n_iter": fitted.extra.get("n_iter"), "sklearn_version_fitted": fitted.sklearn_version,
        "benchmark_accuracy": spec.benchmark if dataset == "fashion" else None,
        "study_a_accuracy": spec.study_a if dataset == "fashion" else None,
    }
    return Predictions(probs=probs, labels=y, indices=indices, dataset=dataset, model=name,
                       class_names=data.class_names, split=split, images=images, meta=meta)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def baseline_report_name(name: str, dataset: str, split: str, train_subset: int | None,
                         overrides: dict[str, Any] | None) -> str:
    """``svm`` for the defaults on Fashion-MNIST test; suffixes only for what differs."""
    out = name
    if train_subset:
        out += f"-n{train_subset}"
    if overrides:
        out += "-" + "-".join(f"{k}{v}" for k, v in sorted(overrides.items()))
    if (dataset, split) != ("fashion", "test"):
        out += f"_{dataset}-{split}"
    return safe_name(out)


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", name).strip("_") or "report"




def evaluate(target: str | Path | Run, dataset: str | None = None, split: str = "test", *,
             data_dir: str | None = None, device: str = "cpu", **baseline_options: Any) -> Predictions:
    """Predictions of a trained run (a :class:`Run`, run folder or checkpoint) or a registered baseline's name.

    ``evaluate(fit("deep"))``, ``evaluate("lightning_logs/deep/version_0", "mnist")``,
    ``evaluate("svm", split="val", train_subset=5000)``: the one entry the CLI and reproduce use.
    """
    if isinstance(target, Run):
        if target.dir is None and target.checkpoint is None:
            raise FmnistError("this run kept no folder or checkpoint (logger and checkpointing off); nothing to "
                              "evaluate.")
        target = target.dir or target.checkpoint
    if isinstance(target, str) and target in B.BASELINES and not Path(target).exists():
        return predict_baseline(target, dataset=dataset or "fashion", split=split, data_dir=data_dir,
                                **baseline_options)
    if baseline_options:
        raise FmnistError(f"options {', '.join(sorted(baseline_options))} apply to baselines only.")
    return predict_checkpoint(target, dataset=dataset, split=split, data_dir=data_dir, device=device)
