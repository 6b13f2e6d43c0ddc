"""The end of a fit: validate and test the best checkpoint, and write the run's ``metrics.json``.

Why apart from the CLI class: this is the run's record (what it scored, how long it took, on what, from which
data and code) -- the one file every report, comparison and ledger record reads.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from fmnist.data.datamodule import ImageDataModule
from fmnist.models import count_parameters
from fmnist.runs import write_metrics
from fmnist.serialization import read_checkpoint
from fmnist.training.callbacks import EpochTimer, ExactResume
from fmnist.training.module import Classifier, weight_fingerprint
from fmnist.training.stopping import STATUS_FINISHED


def finish_run(trainer: L.Trainer, model: Classifier, datamodule: ImageDataModule,
               started: float | None, seed: int | None, commit: str | None) -> dict[str, Any]:
    """Validate and test the best checkpoint; write ``metrics.json`` to the run folder (rank 0).

    ``commit`` is the code the run trained with, read when fit started (None: not a git checkout).
    """
    callback = trainer.checkpoint_callback
    best = callback.best_model_path if isinstance(callback, ModelCheckpoint) and callback.best_model_path else None
    epochs_run = trainer.current_epoch
    timer = next((c for c in trainer.callbacks if isinstance(c, EpochTimer)), None)
    # Copied now: validate/test with ckpt_path restore the best checkpoint's callback state (its shorter list).
    epoch_seconds = list(timer.epoch_seconds) if timer else []
    resume = next((c for c in trainer.callbacks if isinstance(c, ExactResume)), None)
    earlier_seconds, resumes = (resume.elapsed_before, resume.resumes) if resume else (0.0, 0)
    val = trainer.validate(model, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True)
    test = trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=trainer.is_global_zero,
                        weights_only=True)
    val_metrics, test_metrics = (val[0] if val else {}), (test[0] if test else {})
    best_epoch = None
    if best:  # counted from 1, like "epochs" (the checkpoint stores Lightning's 0-based index)
        best_epoch = int(read_checkpoint(best).get("epoch", -1)) + 1
    metrics: dict[str, Any] = {
        "status": STATUS_FINISHED,
        "model": model.hparams.model_name,
        "dataset": datamodule.hparams.dataset,
        "test_acc": test_metrics.get("test_acc"),
        "test_macro_f1": test_metrics.get("test_macro_f1"),
        "test_loss": test_metrics.get("test_loss"),
        "per_class_acc": {k.split("/", 1)[1]: v for k, v in test_metrics.items() if k.startswith("test_acc_class/")},
        "val_acc": val_metrics.get("val_acc"),
        "val_loss": val_metrics.get("val_loss"),
        "val_macro_f1": val_metrics.get("val_macro_f1"),
        "epochs": epochs_run,
        "best_epoch": best_epoch,
        "best_checkpoint": best,
        "trainable_params": count_parameters(model.model),
        "initial_weight_fingerprint": model.initial_fingerprint,
        "final_weight_fingerprint": weight_fingerprint(model.model),
        "n_train": len(datamodule.train_set) if datamodule.train_set is not None else None,
        "n_val": len(datamodule.val_set) if datamodule.val_set is not None else None,
        "fold": datamodule.hparams.fold,
        "n_folds": datamodule.hparams.n_folds,
        "seed": seed,
        # Earlier processes (up to the checkpoint this one resumed from) + this process.
        "wall_seconds": round(earlier_seconds + time.perf_counter() - started, 2) if started else None,
        "resumes": resumes,
        "epoch_seconds": [round(s, 3) for s in epoch_seconds],
        "seconds_per_epoch": round(sum(epoch_seconds) / len(epoch_seconds), 3) if epoch_seconds else None,
        "accelerator": type(trainer.accelerator).__name__,
        "precision": trainer.precision,
        "devices": trainer.num_devices,
        "world_size": trainer.world_size,
        "torch_version": torch.__version__,
        "lightning_version": L.__version__,
        "python_version": platform.python_version(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        # Set by the warm server (fmnist warm start) in the processes it forks: the imports were paid before.
        "warm_server": os.environ.get("FMNIST_WARM_SERVED") == "1",
        "git_commit": commit,
        "data_source": datamodule.data_source,  # folder, why that one, each file's path + sha256
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    log_dir = trainer.log_dir  # a collective call under DDP: every rank must make it
    if trainer.is_global_zero and not trainer.fast_dev_run and log_dir:  # no run folder: nothing to write
        out = write_metrics(Path(log_dir), metrics).parent
        print(f"wrote {out / 'metrics.json'}: test_acc={metrics['test_acc']:.4f} "
              f"macro_f1={metrics['test_macro_f1']:.4f} epochs={epochs_run} best_epoch={best_epoch}")
    return metrics
