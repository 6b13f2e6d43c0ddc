"""The LightningCLI of fmnist: the studies' callbacks, per-model run names, resume by name, metrics.json.

Both ``python train.py fit --config ...`` (argv) and :func:`fmnist.training.api.fit` (a config
dictionary) build this class; ``fit`` ends by validating and testing the best checkpoint and writing
``metrics.json`` beside the TensorBoard events, config and checkpoints in
``lightning_logs/<name>/version_<k>/``.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from fmnist.data.augment import RENAMED_DATA_KEYS, refuse_old_augment_keys
from fmnist.data.datamodule import ImageDataModule
from fmnist.data.sources import dataset_info
from fmnist.errors import FmnistError
from fmnist.files import WriteError
from fmnist.models import get_spec
from fmnist.runs import check_folder_name, git_commit, versions, write_metrics
from fmnist.serialization import CHECKPOINT_READ_ERRORS, checkpoint_error, read_checkpoint
from fmnist.training.callbacks import EpochTimer, ExactResume
from fmnist.training.checkpoint_files import AtomicCheckpointIO, resume_checkpoint
from fmnist.training.finish import finish_run
from fmnist.training.module import Classifier
from fmnist.training.precision import FLOAT32, default_precision
from fmnist.training.quiet import quiet_known_noise
from fmnist.training.requeue import slurm_requeued_run
from fmnist.training.stopping import (
    STATUS_DIVERGED,
    DivergenceGuard,
    TrainingDiverged,
    TrainingStopped,
    Where,
)

DEFAULT_LOGDIR = "lightning_logs"
AUTO_NAME = "auto"  # logger name placeholder: replaced by the model name
DEFAULT_MAX_EPOCHS = 15
# The studies' callbacks: EarlyStopping(val_loss, patience 3), the best checkpoint by val_loss, and last.ckpt.
EARLY_STOPPING_DEFAULTS = {"monitor": "val_loss", "mode": "min", "patience": 3}
CHECKPOINT_DEFAULTS = {"monitor": "val_loss", "mode": "min", "filename": "best", "save_last": True, "save_top_k": 1}


def _input_size(model_name: str) -> int:
    return get_spec(model_name).input_size


def _channels(model_name: str) -> int:
    return get_spec(model_name).channels


class FmnistCLI(LightningCLI):
    """LightningCLI with the studies' callbacks, per-model logger names, resume-by-name and metrics.json."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        quiet_known_noise()
        self.fit_started: float | None = None
        self.fit_commit: str | None = None  # the code this process trains with, read before training starts
        self.metrics: dict[str, Any] | None = None
        kwargs.setdefault("seed_everything_default", 42)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        # A caller's trainer_defaults extend ours (``fit(callbacks=...)`` passes {"callbacks": [...]}: callbacks that
        # join the configured ones but stay out of config.yaml, e.g. a sweep's pruning callback).
        kwargs["trainer_defaults"] = {
            "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                       "init_args": {"save_dir": DEFAULT_LOGDIR, "name": AUTO_NAME}},
            "max_epochs": DEFAULT_MAX_EPOCHS,
            **(kwargs.get("trainer_defaults") or {}),
        }
        kwargs.setdefault("parser_kwargs", {"default_env": False})
        self.fresh_run_dir: Path | None = None  # the run folder this process created, once the trainer exists
        given = kwargs.get("args")
        self._given_subcommands = tuple(given) if isinstance(given, dict) else None
        try:
            super().__init__(Classifier, ImageDataModule, *args, **kwargs)
        except TrainingDiverged as exc:
            self._record_divergence(exc)
            raise
        except WriteError as exc:  # a full disk mid-run: the checkpoints written before are whole; say how to go on
            self._discard_fresh_run_without_results()
            where = self._where()
            if where is None or where.checkpoint is None:
                raise
            fix = "free some space" if exc.full else "make it writable"
            raise WriteError(exc.what, f"{fix}, then resume with --resume (it continues from {where.checkpoint}, the "
                                       f"end of epoch {where.finished_epochs}).", exc.path, exc.full) from None
        except (KeyboardInterrupt, SystemExit) as exc:
            stopped = self._stopped_by_signal(exc)
            self._discard_fresh_run_without_results()
            if stopped is None:
                raise
            raise stopped from None
        except BaseException:
            self._discard_fresh_run_without_results()
            raise
        if getattr(self, "trainer", None) is not None and self.trainer.interrupted:
            self._discard_fresh_run_without_results()

    def subcommands(self) -> dict[str, set[str]]:  # type: ignore[override]  # a staticmethod in LightningCLI
        """Every subcommand for a command line; only the ones given for a call from Python (``fit(...)`` passes
        ``{"fit": cfg}``): jsonargparse then builds one parser instead of four, the largest part of the time
        between the imports and the first training step."""
        every = LightningCLI.subcommands()
        if self._given_subcommands is None:
            return every
        return {name: skip for name, skip in every.items() if name in self._given_subcommands}

    # -- how a run ends early ----------------------------------------------------------------------
    def _where(self) -> Where | None:
        """Where the trainer was, and the checkpoint a resumed run would continue from."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return None
        testing = trainer.state.fn is not None and trainer.state.fn != "fit"
        where = Where(epoch=trainer.current_epoch if testing else trainer.current_epoch + 1, step=trainer.global_step,
                      testing=testing)
        if trainer.log_dir and self.subcommand == "fit":
            try:  # what --resume would continue from
                point = resume_checkpoint(Path(trainer.log_dir))
                where.checkpoint, where.finished_epochs = point.path, point.epoch
            except FmnistError:
                pass
        return where

    def _stopped_by_signal(self, exc: BaseException) -> TrainingStopped | None:
        """SIGTERM (Lightning's SIGTERMException, exit 0 otherwise) or Ctrl-C (its ``sys.exit(1)``) -> TrainingStopped."""
        trainer = getattr(self, "trainer", None)
        sigterm = trainer is not None and trainer.received_sigterm
        if isinstance(exc, TrainingStopped):
            signum = exc.signum
        elif isinstance(exc, SIGTERMException) or (isinstance(exc, SystemExit) and sigterm):
            signum = signal.SIGTERM
        elif isinstance(exc, KeyboardInterrupt) or isinstance(exc.__context__, KeyboardInterrupt):
            signum = signal.SIGTERM if sigterm else signal.SIGINT
        else:
            return None  # an ordinary exit (--help, a refused argument)
        return TrainingStopped(signum, self._where())

    def _record_divergence(self, exc: TrainingDiverged) -> None:
        """The run's metrics.json says it diverged (and holds no test score); its folder is kept."""
        trainer = getattr(self, "trainer", None)
        if trainer is None or not trainer.is_global_zero or trainer.fast_dev_run or not trainer.log_dir:
            return
        config = self.config[self.subcommand] if self.subcommand else self.config
        write_metrics(Path(trainer.log_dir), {
            "status": STATUS_DIVERGED, "message": str(exc), "model": config.model.model_name,
            "dataset": config.data.dataset, **exc.facts, "test_acc": None, "test_macro_f1": None,
            "val_acc": None, "epochs": exc.facts["epoch"] - 1, "seed": config.get("seed_everything"),
            "git_commit": self.fit_commit, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        })

    def _discard_fresh_run_without_results(self) -> None:
        """A run that failed or was stopped before its first checkpoint leaves no empty version folder behind."""
        run_dir = self.fresh_run_dir
        if run_dir is None or not run_dir.is_dir():
            return
        if any(run_dir.rglob("*.ckpt")) or (run_dir / "metrics.json").exists():
            return  # something to resume or read: keep it
        shutil.rmtree(run_dir, ignore_errors=True)

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        parser.set_defaults({f"early_stopping.{key}": value for key, value in EARLY_STOPPING_DEFAULTS.items()})
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({f"checkpoint.{key}": value for key, value in CHECKPOINT_DEFAULTS.items()})
        parser.add_argument("--test_after_fit", type=bool, default=True,
                            help="after fit, test the best checkpoint and write metrics.json")
        parser.link_arguments("model.model_name", "data.image_size", compute_fn=_input_size)
        parser.link_arguments("model.model_name", "data.channels", compute_fn=_channels)

    # -- configuration fix-ups before anything is built ------------------------------------------
    def parse_arguments(self, parser: Any, args: Any) -> None:
        """Old spellings of renamed settings are one sentence naming the new key, before jsonargparse's own error."""
        refuse_old_spellings(sys.argv[1:] if args is None else args)
        super().parse_arguments(parser, args)

    def _parse_ckpt_path(self) -> None:
        # LightningCLI reads --ckpt_path's hyperparameters right after parsing (weights_only=True); a missing
        # file would only fail later in the Trainer, and a refused one surfaces as a traceback: one sentence each.
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path in (None, "last", "best", "hpc", "registry"):
            super()._parse_ckpt_path()
            return
        if not Path(ckpt_path).is_file():
            raise checkpoint_error(Path(ckpt_path), FileNotFoundError(ckpt_path))
        try:
            super()._parse_ckpt_path()
        except CHECKPOINT_READ_ERRORS as exc:
            raise checkpoint_error(Path(ckpt_path), exc) from None

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        model_name = config.model.model_name
        get_spec(model_name)  # unknown names: one clear sentence before anything is built
        classes = len(dataset_info(config.data.dataset).class_names)
        if config.model.num_classes != classes:  # e.g. a checkpoint's hyperparameters applied by --ckpt_path
            raise FmnistError(f"the model has {config.model.num_classes} outputs but {config.data.dataset!r} has "
                              f"{classes} classes; set model.num_classes to {classes} or use a checkpoint "
                              f"trained on {config.data.dataset}.")
        if "weights_only" in config:  # fit/validate/test/predict with --ckpt_path: never unpickle code
            if config.weights_only is False:
                raise FmnistError("--weights_only false is refused: fmnist loads checkpoints as tensors and "
                                  "plain values only, so a checkpoint cannot run code.")
            config.weights_only = True
        logger = config.trainer.logger
        init = _logger_init_args(logger)
        if init is not None and init.get("name") in (AUTO_NAME, None):
            init["name"] = model_name
        if init is not None:
            for key in ("name", "version"):
                check_folder_name(f"trainer.logger.init_args.{key}", init.get(key))
        if config.trainer.get("default_root_dir") is None:
            # Without a logger (``--trainer.logger false``, ``fast_dev_run``) Lightning puts checkpoints and
            # config.yaml in the current directory; keep them under the log root instead.
            root = Path(init["save_dir"]) if init is not None else Path(DEFAULT_LOGDIR)
            config.trainer.default_root_dir = str(root / (init["name"] if init is not None else model_name))
        _check_writable(Path(init["save_dir"]) if init is not None else Path(config.trainer.default_root_dir))
        if self.subcommand in ("test", "validate", "predict") and config.get("ckpt_path") is None:
            raise FmnistError(f"train.py {self.subcommand} needs --ckpt_path CHECKPOINT (e.g. a run's "
                              f"checkpoints/best.ckpt); without it the model's fresh random weights would be "
                              f"scored. `python evaluate.py RUN` evaluates a run folder in one step.")
        if self.subcommand == "fit" and config.get("ckpt_path") is None and init is not None:
            name_dir = Path(init["save_dir"]) / init["name"]
            requeued = slurm_requeued_run(name_dir, Path(config.trainer.default_root_dir))
            if requeued is not None:
                print(f"SLURM requeued this job: continuing {requeued} from its last checkpoint (as --resume does).")
                _resume(config, init, requeued)
        if self.subcommand == "fit" and config.get("ckpt_path") == "last":
            if init is None:
                raise FmnistError("--ckpt_path last needs the TensorBoard logger (it finds the run by its name).")
            name_dir = Path(init["save_dir"]) / init["name"]
            trained = [run for run in versions(name_dir) if any((run / "checkpoints").glob("*.ckpt"))]
            if not trained:
                raise FmnistError(f"nothing to resume: no {name_dir}/version_*/checkpoints/last.ckpt; start the run "
                                  f"without --resume / --ckpt_path last.")
            _resume(config, init, trained[-1])
        if config.trainer.get("precision") is None:  # not asked for
            config.trainer.precision = _unasked_precision(config)

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
        extra.append(ExactResume())
        extra.append(DivergenceGuard())
        configured_plugins = config.trainer.get("plugins")
        plugins = list(configured_plugins) if isinstance(configured_plugins, list) else \
            [configured_plugins] if configured_plugins is not None else []
        if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
            plugins.append(AtomicCheckpointIO())  # a checkpoint is the old one or the new one, never half of one
        kwargs["plugins"] = plugins
        trainer = super().instantiate_trainer(**kwargs)
        log_dir = trainer.log_dir  # the logger's version folder (not created yet) or default_root_dir
        if log_dir and not Path(log_dir).exists():
            self.fresh_run_dir = Path(log_dir)
        return trainer

    # -- fit, then test the best checkpoint ---------------------------------------------------------
    def before_fit(self) -> None:
        self.fit_started = time.perf_counter()
        self.fit_commit = git_commit()  # not at the end: commits may land in the working tree while it trains

    def after_fit(self) -> None:
        if self.trainer.interrupted or not self.config[self.subcommand].get("test_after_fit", True):
            return
        self.metrics = finish_run(self.trainer, self.model, self.datamodule, self.fit_started,
                                  seed=self.config[self.subcommand].get("seed_everything"), commit=self.fit_commit)


def refuse_old_spellings(args: Any) -> None:
    """Flat augmentation keys (``--data.rotation``, ``data.augment: true`` in a ``--config`` file) in a command line
    or a config dictionary: :func:`fmnist.data.augment.refuse_old_augment_keys` names the new key."""
    if isinstance(args, Mapping):
        for section in args.values():
            if isinstance(section, Mapping) and isinstance(section.get("data"), Mapping):
                refuse_old_augment_keys(section["data"], "the config given")
        return
    tokens = [str(a) for a in args]
    flat: dict[str, Any] = {}
    for i, token in enumerate(tokens):
        key, sep, value = token.partition("=")
        if key in ("--config", "-c") and (sep or i + 1 < len(tokens)):
            path = Path(value if sep else tokens[i + 1])
            loaded = _read_yaml(path)
            if isinstance(loaded, Mapping) and isinstance(loaded.get("data"), Mapping):
                refuse_old_augment_keys(loaded["data"], str(path))
        elif key.startswith("--data."):
            name = key.removeprefix("--data.")
            if name in RENAMED_DATA_KEYS:
                flat[name] = value
            elif name == "augment":
                flat[name] = yaml.safe_load(value if sep else (tokens[i + 1] if i + 1 < len(tokens) else ""))
    refuse_old_augment_keys(flat, "the command line")


def _read_yaml(path: Path) -> Any:
    """A config file's contents, or None when it cannot be read (LightningCLI then says so itself)."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def _resume(config: Any, init: dict, run_dir: Path) -> None:
    """Continue ``run_dir`` (its folder, its newest readable checkpoint; a damaged newer one is named and skipped)."""
    point = resume_checkpoint(run_dir)
    note = point.note()
    if note:
        print(note, file=sys.stderr)
    init["version"] = run_dir.name
    config.ckpt_path = str(point.path)


def _unasked_precision(config: Any) -> str:
    """A checkpoint continues (or is scored) in the precision it was trained in, so a resumed run does not change
    precision half-way (e.g. a float32 run of before the bf16 default, or one moved to a CPU without native bf16);
    a fresh run gets the machine's default (bf16 autocast where the CPU has it natively)."""
    ckpt_path = config.get("ckpt_path")
    if ckpt_path and Path(ckpt_path).is_file():
        try:
            return str(read_checkpoint(ckpt_path).get("training_precision") or FLOAT32)  # older ones: float32
        except CHECKPOINT_READ_ERRORS as exc:
            raise checkpoint_error(Path(ckpt_path), exc) from None
    return default_precision(_trains_on_cpu(config.trainer.get("accelerator")))


def _trains_on_cpu(accelerator: Any) -> bool:
    """Whether Lightning will put this trainer on the CPU (``"auto"`` picks CUDA, then MPS, then the CPU)."""
    if accelerator == "cpu":
        return True
    if accelerator in (None, "auto"):
        return not torch.cuda.is_available() and not torch.backends.mps.is_available()
    return False


def _check_writable(folder: Path) -> None:
    """Runs write here: fail before training, in one sentence, if they cannot (read-only, not a folder ...).

    Nothing is created: the nearest existing folder on the path must be a writable folder.
    """
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    problem = None
    if not existing.is_dir():
        problem = f"{existing} is a file, not a folder"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = f"{existing} is not writable"
    if problem:
        raise FmnistError(f"cannot write runs to {folder} ({problem}); pass --logdir (or "
                          f"trainer.logger.init_args.save_dir / trainer.default_root_dir) with a writable folder.")


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
