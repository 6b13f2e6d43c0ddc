"""Training command line: a LightningCLI plus the ``--model NAME --gpus N`` shorthand.

``python train.py fit --config configs/deep.yaml [--trainer.* --model.* --data.*]`` is the full
LightningCLI; ``python train.py --model deep [--gpus N] [--epochs E] ...`` translates to it.
Either way ``fit`` ends by testing the best checkpoint and writing ``metrics.json`` beside
the TensorBoard events, config and checkpoints in ``lightning_logs/<name>/version_<k>/``.
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.cli import LightningCLI

from fmnist.callbacks import EpochTimer
from fmnist.data.datamodule import FashionMNISTDataModule
from fmnist.errors import FmnistError
from fmnist.models import count_parameters, get_spec, list_models
from fmnist.module import Classifier, weight_fingerprint
from fmnist.serialization import read_checkpoint

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_LOGDIR = "lightning_logs"
AUTO_NAME = "auto"  # logger name placeholder: replaced by the model name
PRETRAIN_CONFIG = "mnist_pretrain"
TRANSFER_BASE = "base.ckpt"  # <logdir>/mnist_pretrain/base.ckpt


def _input_size(model_name: str) -> int:
    return get_spec(model_name).input_size


def _channels(model_name: str) -> int:
    return get_spec(model_name).channels


class FmnistCLI(LightningCLI):
    """LightningCLI with the studies' callbacks, per-model logger names, resume-by-name and metrics.json."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.fit_started: float | None = None
        self.metrics: dict[str, Any] | None = None
        kwargs.setdefault("seed_everything_default", 42)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("trainer_defaults", {
            "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                       "init_args": {"save_dir": DEFAULT_LOGDIR, "name": AUTO_NAME}},
            "max_epochs": 15,
        })
        kwargs.setdefault("parser_kwargs", {"default_env": False})
        super().__init__(Classifier, FashionMNISTDataModule, *args, **kwargs)

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        parser.set_defaults({"early_stopping.monitor": "val_loss", "early_stopping.mode": "min",
                             "early_stopping.patience": 3})
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.monitor": "val_loss", "checkpoint.mode": "min", "checkpoint.filename": "best",
                             "checkpoint.save_last": True, "checkpoint.save_top_k": 1})
        parser.add_argument("--test_after_fit", type=bool, default=True,
                            help="after fit, test the best checkpoint and write metrics.json")
        parser.link_arguments("model.model_name", "data.image_size", compute_fn=_input_size)
        parser.link_arguments("model.model_name", "data.channels", compute_fn=_channels)

    # -- configuration fix-ups before anything is built ------------------------------------------
    def _parse_ckpt_path(self) -> None:
        # LightningCLI reads --ckpt_path's hyperparameters right after parsing (weights_only=True, but a refused
        # or missing file surfaces as a traceback); check the file first so it ends in one sentence.
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path not in (None, "last", "best", "hpc", "registry"):
            read_checkpoint(ckpt_path)
        super()._parse_ckpt_path()

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        model_name = config.model.model_name
        get_spec(model_name)  # unknown names: one clear sentence before anything is built
        if "weights_only" in config:  # fit/validate/test/predict with --ckpt_path: never unpickle code
            if config.weights_only is False:
                raise FmnistError("--weights_only false is refused: fmnist loads checkpoints as tensors and "
                                  "plain values only, so a checkpoint cannot run code.")
            config.weights_only = True
        logger = config.trainer.logger
        init = _logger_init_args(logger)
        if init is not None and init.get("name") in (AUTO_NAME, None):
            init["name"] = model_name
        if self.subcommand == "fit" and config.get("ckpt_path") == "last":
            if init is None:
                raise FmnistError("--ckpt_path last needs the TensorBoard logger (it finds the run by its name).")
            run_dir = latest_run(Path(init["save_dir"]) / init["name"], need="checkpoints/last.ckpt")
            if run_dir is None:
                raise FmnistError(f"nothing to resume: no {Path(init['save_dir']) / init['name']}/version_*/"
                                  f"checkpoints/last.ckpt; start the run without --resume / --ckpt_path last.")
            init["version"] = run_dir.name
            config.ckpt_path = str(run_dir / "checkpoints" / "last.ckpt")

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        # A ``callbacks`` keyword replaces ``trainer.callbacks`` in LightningCLI, so the configured ones
        # (YAML or ``--trainer.callbacks+=...``) are carried over explicitly before ours are added.
        configured = config.trainer.get("callbacks") or []
        extra = kwargs["callbacks"] = [*(configured if isinstance(configured, list) else [configured]),
                                       *kwargs.get("callbacks", [])]
        if config.trainer.get("enable_progress_bar", True) is not False:
            extra.append(RichProgressBar())
        if config.trainer.get("logger") not in (False, None):
            extra.append(LearningRateMonitor(logging_interval="epoch"))
        extra.append(EpochTimer())
        return super().instantiate_trainer(**kwargs)

    # -- fit, then test the best checkpoint ---------------------------------------------------------
    def before_fit(self) -> None:
        self.fit_started = time.perf_counter()

    def after_fit(self) -> None:
        if self.trainer.interrupted or not self.config[self.subcommand].get("test_after_fit", True):
            return
        self.metrics = finish_run(self.trainer, self.model, self.datamodule, self.fit_started,
                                  seed=self.config[self.subcommand].get("seed_everything"))


def _logger_init_args(logger: Any) -> dict | None:
    """The TensorBoardLogger's init_args namespace/dict in the parsed config, if that is the logger."""
    if isinstance(logger, list):
        logger = logger[0] if logger else None
    if logger is None or isinstance(logger, bool):
        return None
    class_path = logger.get("class_path", "") if hasattr(logger, "get") else ""
    if "TensorBoardLogger" not in class_path:
        return None
    return logger["init_args"]


def latest_run(name_dir: Path, need: str | None = None) -> Path | None:
    """Highest ``version_<k>`` folder under ``name_dir`` (that contains ``need``, if given)."""
    runs = []
    for folder in name_dir.glob("version_*"):
        match = re.fullmatch(r"version_(\d+)", folder.name)
        if match and (need is None or (folder / need).exists()):
            runs.append((int(match.group(1)), folder))
    return max(runs)[1] if runs else None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def finish_run(trainer: L.Trainer, model: Classifier, datamodule: FashionMNISTDataModule,
               started: float | None, seed: int | None) -> dict[str, Any]:
    """Validate and test the best checkpoint; write ``metrics.json`` to the run folder (rank 0)."""
    callback = trainer.checkpoint_callback
    best = callback.best_model_path if isinstance(callback, ModelCheckpoint) and callback.best_model_path else None
    epochs_run = trainer.current_epoch
    timer = next((c for c in trainer.callbacks if isinstance(c, EpochTimer)), None)
    # Copied now: validate/test with ckpt_path restore the best checkpoint's callback state (its shorter list).
    epoch_seconds = list(timer.epoch_seconds) if timer else []
    val = trainer.validate(model, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True)
    test = trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=trainer.is_global_zero,
                        weights_only=True)
    val_metrics, test_metrics = (val[0] if val else {}), (test[0] if test else {})
    best_epoch = None
    if best:  # counted from 1, like "epochs" (the checkpoint stores Lightning's 0-based index)
        best_epoch = int(read_checkpoint(best).get("epoch", -1)) + 1
    metrics: dict[str, Any] = {
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
        "wall_seconds": round(time.perf_counter() - started, 2) if started else None,
        "epoch_seconds": [round(s, 3) for s in epoch_seconds],
        "seconds_per_epoch": round(sum(epoch_seconds) / len(epoch_seconds), 3) if epoch_seconds else None,
        "accelerator": type(trainer.accelerator).__name__,
        "devices": trainer.num_devices,
        "world_size": trainer.world_size,
        "torch_version": torch.__version__,
        "lightning_version": L.__version__,
        "python_version": platform.python_version(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "git_commit": _git_commit(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    log_dir = trainer.log_dir  # a collective call under DDP: every rank must make it
    if trainer.is_global_zero and not trainer.fast_dev_run:  # fast_dev_run has no run folder to write to
        out = Path(log_dir or ".")
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        print(f"wrote {out / 'metrics.json'}: test_acc={metrics['test_acc']:.4f} "
              f"macro_f1={metrics['test_macro_f1']:.4f} epochs={epochs_run} best_epoch={best_epoch}")
    return metrics


# -- the shorthand -------------------------------------------------------------------------------------
SHORTHAND_FLAGS = {"--model", "--gpus", "--epochs", "--optimizer", "--seed", "--resume", "--folds", "--fold",
                   "--list-models", "--logdir"}


def _take(argv: list[str], flag: str, has_value: bool = True) -> tuple[str | bool | None, list[str]]:
    """Remove ``flag`` (``--flag V`` or ``--flag=V``) from argv; return its value."""
    rest, value, i = [], None, 0
    while i < len(argv):
        arg = argv[i]
        if arg == flag:
            if not has_value:
                value = True
            elif i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise FmnistError(f"{flag} needs a value.")
            else:
                value = argv[i + 1]
                i += 1
        elif has_value and arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    return value, rest


def _int_flag(flag: str, value: str | None, minimum: int = 0) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise FmnistError(f"{flag} takes an integer, got {value!r}.") from None
    if number < minimum:
        raise FmnistError(f"{flag} must be at least {minimum}, got {number}.")
    return number


def gpu_flags(gpus: int | None, available: int | None = None) -> list[str]:
    """``--gpus`` -> Lightning 2 accelerator/devices/strategy flags (0 or absent: CPU; N>1: DDP)."""
    if not gpus:
        return ["--trainer.accelerator", "cpu", "--trainer.devices", "1"]
    available = torch.cuda.device_count() if available is None else available
    if gpus > available:
        raise FmnistError(f"--gpus {gpus} asks for {gpus} GPU(s) but this machine has {available}; "
                          f"use --gpus {available} or drop --gpus to train on the CPU.")
    flags = ["--trainer.accelerator", "gpu", "--trainer.devices", str(gpus)]
    if gpus > 1:
        flags += ["--trainer.strategy", "ddp"]
    return flags


def translate_shorthand(argv: list[str], available_gpus: int | None = None) -> tuple[list[str], dict[str, Any]]:
    """``--model deep --gpus 1 --epochs 5 ...`` -> LightningCLI ``fit`` arguments, plus the shorthand's own options."""
    model, argv = _take(argv, "--model")
    gpus, argv = _take(argv, "--gpus")
    epochs, argv = _take(argv, "--epochs")
    optimizer, argv = _take(argv, "--optimizer")
    seed, argv = _take(argv, "--seed")
    resume, argv = _take(argv, "--resume", has_value=False)
    folds, argv = _take(argv, "--folds")
    fold, argv = _take(argv, "--fold")
    logdir, argv = _take(argv, "--logdir")
    if model is None:
        raise FmnistError("the shorthand needs --model NAME (see --list-models), or use `train.py fit --config ...`.")
    get_spec(model)
    if optimizer is not None and optimizer not in ("adam", "adamw", "sgd"):
        raise FmnistError(f"--optimizer must be one of adam, adamw, sgd; got {optimizer!r}.")
    args = ["fit"]
    config = CONFIG_DIR / f"{model}.yaml"
    if config.is_file():
        args += ["--config", str(config)]
    args += ["--model.model_name", str(model)]
    args += gpu_flags(_int_flag("--gpus", gpus), available_gpus)
    if epochs is not None:
        args += ["--trainer.max_epochs", str(_int_flag("--epochs", epochs, 1))]
    if optimizer is not None:
        args += ["--model.optimizer", str(optimizer)]
        if not any(a.split("=", 1)[0] == "--model.lr" for a in argv):
            # The configs pin Adam's 1e-3; SGD needs its own default (study B: 0.01, momentum 0.9).
            args += ["--model.lr", "0.01" if optimizer == "sgd" else "0.001"]
    if seed is not None:
        args += ["--seed_everything", str(_int_flag("--seed", seed))]
    if logdir is not None:
        args += ["--trainer.logger.init_args.save_dir", str(logdir)]
    if resume:
        args += ["--ckpt_path", "last"]
    options = {"model": model, "logdir": logdir or DEFAULT_LOGDIR, "folds": _int_flag("--folds", folds, 2),
               "fold": _int_flag("--fold", fold), "gpus": gpus, "epochs": epochs, "seed": seed}
    if options["fold"] is not None and options["folds"] is None:
        raise FmnistError("--fold i needs --folds K (e.g. --folds 3 --fold 0).")
    return args + argv, options


def list_models_table() -> str:
    from fmnist.models import create_model

    rows = [("name", "trainable params", "input", "source", "description")]
    for name in list_models():
        spec = get_spec(name)
        params = count_parameters(create_model(name))
        rows.append((name, f"{params:,}", f"{spec.channels}x{spec.input_size}x{spec.input_size}", spec.source,
                     spec.description))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4] for row in rows]
    return "\n".join(lines)


def _pretrain_args(shorthand_args: list[str], options: dict[str, Any]) -> list[str]:
    """Arguments for the MNIST base of ``transfer``: same hardware, epochs, seed and data/trainer flags."""
    args = ["fit", "--config", str(CONFIG_DIR / f"{PRETRAIN_CONFIG}.yaml")]
    keep = ("--trainer.", "--data.data_dir", "--data.batch_size", "--data.train_subset", "--seed_everything")
    i = 0
    rest = shorthand_args[1:]
    while i < len(rest):
        arg = rest[i]
        takes_value = i + 1 < len(rest) and not rest[i + 1].startswith("--") and "=" not in arg
        if arg.startswith(keep) and not arg.startswith("--trainer.logger.init_args.name"):
            args.append(arg)
            if takes_value:
                args.append(rest[i + 1])
        i += 2 if takes_value else 1
    return args + ["--trainer.logger.init_args.name", PRETRAIN_CONFIG]


def ensure_transfer_base(args: list[str], options: dict[str, Any]) -> list[str]:
    """Pretrain ``scratch`` on MNIST digits when the base checkpoint is missing; point ``transfer`` at it."""
    base = Path(options["logdir"]) / PRETRAIN_CONFIG / TRANSFER_BASE
    if not base.is_file():
        print(f"transfer: no MNIST base at {base}; pretraining `scratch` on MNIST digits first")
        cli = run_cli(_pretrain_args(args, options))
        best = cli.trainer.checkpoint_callback.best_model_path if cli.trainer.checkpoint_callback else ""
        if cli.trainer.is_global_zero:
            base.parent.mkdir(parents=True, exist_ok=True)
            if best:
                shutil.copyfile(best, base)
            else:
                cli.trainer.save_checkpoint(base)
        if cli.trainer.world_size > 1:
            cli.trainer.strategy.barrier()
    return args + ["--model.model_kwargs", json.dumps({"base_checkpoint": str(base), "freeze_base": True})]


def run_cli(args: list[str]) -> FmnistCLI:
    return FmnistCLI(args=args)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if "--list-models" in argv:
            print(list_models_table())
            return 0
        if any(a.split("=", 1)[0] in SHORTHAND_FLAGS for a in argv) and (not argv or argv[0] not in
                                                                             ("fit", "validate", "test", "predict")):
            args, options = translate_shorthand(argv)
            if options["folds"]:
                from fmnist.cv import run_cv

                return run_cv(args, options)
            if options["model"] == "transfer" and "--model.model_kwargs" not in args:
                args = ensure_transfer_base(args, options)
            run_cli(args)
            return 0
        run_cli(argv)
        return 0
    except FmnistError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; resume with --resume (or --ckpt_path last)", file=sys.stderr)
        return 130
