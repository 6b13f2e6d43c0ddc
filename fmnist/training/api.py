"""The Python API for training: ``fit(...) -> Run``.

The command line (``train.py --model deep``), the K-fold driver, ``fmnist.reproduce`` and the tests
all call :func:`fit` with typed values. It resolves one configuration dictionary -- a YAML of
``configs/`` (or any given file or dict), the shorthand's options, then dotted overrides such as
``{"trainer.max_epochs": 3}`` -- and hands it to :class:`FmnistCLI` as a dictionary, so nothing
builds or re-parses a command line.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch.callbacks import Callback

from fmnist.data.augment import refuse_old_augment_keys
from fmnist.errors import FmnistError
from fmnist.files import copy_atomic
from fmnist.models import get_spec, model_info
from fmnist.runs import read_metrics
from fmnist.serialization import read_text_capped
from fmnist.training.lightning_cli import AUTO_NAME, DEFAULT_LOGDIR, FmnistCLI

# The studied recipes: fmnist/configs, a link to the checkout's configs/ folder that wheels carry as package data.
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
PRETRAIN_CONFIG = "mnist_pretrain"
TRANSFER_BASE = "base.ckpt"  # <logdir>/mnist_pretrain/base.ckpt
OPTIMIZERS = ("adam", "adamw", "sgd")
TENSORBOARD = "lightning.pytorch.loggers.TensorBoardLogger"
# What the MNIST base of ``transfer`` shares with the run that needs it: hardware, budget and data access.
PRETRAIN_SHARED_KEYS = ("trainer", "seed_everything")
PRETRAIN_SHARED_DATA = ("data_dir", "batch_size", "train_subset")


@dataclass
class Run:
    """A finished training run: its folder, what it scored, its best checkpoint and the config that made it."""

    dir: Path | None
    metrics: dict[str, Any] | None
    checkpoint: Path | None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def test_acc(self) -> float | None:
        return (self.metrics or {}).get("test_acc")


# -- building the configuration ----------------------------------------------------------------------
def model_config_path(model: str) -> Path | None:
    """``configs/<model>.yaml``, the model's studied recipe; None for a model of one's own (it has none).

    A built-in model whose recipe is missing (a copy of fmnist installed without its configs) is one sentence,
    never a run with the classes' defaults that looks like the studied recipe.
    """
    path = CONFIG_DIR / f"{model}.yaml"
    if path.is_file():
        return path
    if model_info(model).has_recipe:
        raise FmnistError(f"the recipe of {model!r} ({path}) is not installed with this copy of fmnist; reinstall "
                          f"it from the repository (pip install .) or pass a config (train.py fit --config FILE).")
    return None


def load_config(config: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """A LightningCLI ``fit`` config as a dictionary (a deep copy; the caller may change it)."""
    if isinstance(config, Mapping):
        return copy.deepcopy(dict(config))
    path = Path(config)
    try:
        loaded = yaml.safe_load(read_text_capped(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise FmnistError(f"config {path} is not readable ({getattr(exc, 'strerror', None) or exc}); pass an "
                          f"existing YAML file.") from None
    except yaml.YAMLError as exc:
        raise FmnistError(f"config {path} is not valid YAML ({str(exc).splitlines()[0]}).") from None
    if not isinstance(loaded, dict):
        raise FmnistError(f"config {path} must hold a mapping of keys (trainer:, model:, data:, ...).")
    return loaded


def _default_logger() -> dict[str, Any]:
    return {"class_path": TENSORBOARD, "init_args": {"save_dir": DEFAULT_LOGDIR, "name": AUTO_NAME}}


def set_key(config: dict[str, Any], dotted: str, value: Any) -> None:
    """``set_key(cfg, "trainer.max_epochs", 3)``; creates missing levels (a logger gets its class first)."""
    keys = dotted.split(".")
    if not all(keys):
        raise FmnistError(f"override key {dotted!r} is malformed; write it like trainer.max_epochs.")
    node = config
    for depth, key in enumerate(keys[:-1]):
        if keys[:depth + 1] == ["trainer", "logger"] and not isinstance(node.get(key), dict):
            if node.get(key) in (False, None) and key in node:
                raise FmnistError(f"{dotted} cannot be set: the logger is switched off (trainer.logger: false).")
            node[key] = _default_logger()
        child = node.get(key)
        if not isinstance(child, dict):
            if child is not None:
                raise FmnistError(f"override {dotted} goes inside {'.'.join(keys[:depth + 1])}, which is "
                                  f"{child!r}, not a group of settings.")
            child = node[key] = {}
        node = child
    last = keys[-1]
    if last.endswith("+"):  # LightningCLI's append: ``trainer.callbacks+`` adds to the configured list
        node[last[:-1]] = appended(node.get(last[:-1]), value, classes=last[:-1] in CLASS_LISTS)
    else:
        node[last] = value


CLASS_LISTS = ("callbacks", "logger", "plugins")  # lists of classes: a bare string is a class path


def appended(existing: Any, value: Any, classes: bool) -> list[Any]:
    """``existing`` (a list, one item or nothing) followed by ``value`` (one item or a list)."""
    items = existing if isinstance(existing, list) else ([] if existing in (None, False) else [existing])
    new = value if isinstance(value, list) else [value]
    if classes:
        new = [{"class_path": item} if isinstance(item, str) else item for item in new]
    return [*items, *new]


def get_key(config: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    node: Any = config
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return default
        node = node[key]
    return node


def gpu_settings(gpus: int | None, available: int | None = None) -> dict[str, Any]:
    """``gpus`` -> Lightning 2 accelerator/devices/strategy (0 or None: CPU; N > 1: DDP)."""
    if not gpus:
        return {"trainer.accelerator": "cpu", "trainer.devices": 1}
    if gpus < 0:
        raise FmnistError(f"--gpus must be 0 or more, got {gpus}.")
    available = torch.cuda.device_count() if available is None else available
    if gpus > available:
        raise FmnistError(f"--gpus {gpus} asks for {gpus} GPU(s) but this machine has {available}; "
                          f"use --gpus {available} or drop --gpus to train on the CPU.")
    settings: dict[str, Any] = {"trainer.accelerator": "gpu", "trainer.devices": gpus}
    if gpus > 1:
        settings["trainer.strategy"] = "ddp"
    return settings


def resolve_config(model: str | None = None, *, config: str | Path | Mapping[str, Any] | None = None,
                   overrides: Mapping[str, Any] | None = None, seed: int | None = None, epochs: int | None = None,
                   gpus: int | None = None, optimizer: str | None = None, logdir: str | Path | None = None,
                   name: str | None = None, version: str | None = None, resume: bool = False,
                   available_gpus: int | None = None) -> dict[str, Any]:
    """The one ``fit`` configuration for these settings (later ones win: config < options < overrides)."""
    if config is not None:
        cfg = load_config(config)
    elif model is not None:
        get_spec(model)  # an unknown name is one sentence before any file is read
        path = model_config_path(model)
        cfg = load_config(path) if path else {}
    else:
        raise FmnistError("fit needs a model name (see `python train.py --list-models`) or a config.")
    options: dict[str, Any] = {}
    if model is not None:
        options["model.model_name"] = model
    if gpus is not None or "trainer" not in cfg or "accelerator" not in (cfg.get("trainer") or {}):
        options.update(gpu_settings(gpus, available_gpus))
    if epochs is not None:
        if epochs < 1:
            raise FmnistError(f"--epochs must be at least 1, got {epochs}.")
        options["trainer.max_epochs"] = epochs
    if optimizer is not None:
        if optimizer not in OPTIMIZERS:
            raise FmnistError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}; got {optimizer!r}.")
        options["model.optimizer"] = optimizer
        if "model.lr" not in (overrides or {}):
            # The configs pin Adam's 1e-3; SGD needs its own default (study B: 0.01, momentum 0.9).
            options["model.lr"] = 0.01 if optimizer == "sgd" else 0.001
    if seed is not None:
        if seed < 0:
            raise FmnistError(f"--seed must be 0 or more, got {seed}.")
        options["seed_everything"] = seed
    if logdir is not None:
        options["trainer.logger.init_args.save_dir"] = str(logdir)
    if name is not None:
        options["trainer.logger.init_args.name"] = name
    if version is not None:
        options["trainer.logger.init_args.version"] = version
    if resume:
        options["ckpt_path"] = "last"
    if model == "transfer" and not any(k.startswith("model.model_kwargs") for k in overrides or {}):
        # The shorthand/API trains transfer on the MNIST base of *this* log folder (pretrained on demand),
        # not on whatever path configs/transfer.yaml names for the plain LightningCLI.
        (get_key(cfg, "model.model_kwargs") or {}).pop("base_checkpoint", None)
    for key, value in {**options, **dict(overrides or {})}.items():
        set_key(cfg, key, value)
    if logdir is not None and get_key(cfg, "trainer.logger") is False and get_key(cfg, "trainer.default_root_dir") is None:
        # No logger to carry logdir: the run folder goes there all the same, never to ./lightning_logs.
        set_key(cfg, "trainer.default_root_dir", str(Path(logdir) / (name or get_key(cfg, "model.model_name") or "run")))
    if get_key(cfg, "model.model_name") is None:
        raise FmnistError("the config names no model (model.model_name); add it or pass a model name.")
    if isinstance(cfg.get("data"), Mapping):
        refuse_old_augment_keys(cfg["data"], f"{config} or the settings given" if isinstance(config, str | Path)
                                else "the settings given")
    return cfg


def run_name(cfg: Mapping[str, Any]) -> str:
    """The logger's run name for this config (the model name unless one is set)."""
    name = get_key(cfg, "trainer.logger.init_args.name")
    return get_key(cfg, "model.model_name") if name in (None, AUTO_NAME) else str(name)


def log_root(cfg: Mapping[str, Any]) -> Path:
    return Path(get_key(cfg, "trainer.logger.init_args.save_dir") or DEFAULT_LOGDIR)


# -- running -----------------------------------------------------------------------------------------
def run_config(cfg: Mapping[str, Any], callbacks: Sequence[Callback] = ()) -> Run:
    """Train (and test) exactly this resolved configuration.

    ``callbacks`` join the configured ones for this run only (not written to its config.yaml): live objects
    such as a sweep's pruning callback, which no YAML can name.
    """
    cfg = copy.deepcopy(dict(cfg))
    if get_key(cfg, "model.model_name") == "transfer" and not get_key(cfg, "model.model_kwargs.base_checkpoint"):
        cfg = with_transfer_base(cfg)
    cli = FmnistCLI(args={"fit": cfg}, trainer_defaults={"callbacks": list(callbacks)} if callbacks else None)
    trainer = cli.trainer
    log_dir = Path(trainer.log_dir) if trainer.logger is not None and trainer.log_dir else None
    callback = trainer.checkpoint_callback
    best = getattr(callback, "best_model_path", "") or ""
    metrics = cli.metrics if cli.metrics is not None else (read_metrics(log_dir) if log_dir else None)
    if trainer.interrupted:
        raise KeyboardInterrupt
    return Run(dir=log_dir, metrics=metrics, checkpoint=Path(best) if best else None, config=cfg)


def fit(model: str | None = None, *, config: str | Path | Mapping[str, Any] | None = None,
        overrides: Mapping[str, Any] | None = None, seed: int | None = None, epochs: int | None = None,
        gpus: int | None = None, optimizer: str | None = None, logdir: str | Path | None = None,
        name: str | None = None, version: str | None = None, resume: bool = False,
        callbacks: Sequence[Callback] = ()) -> Run:
    """Train ``model`` with its studied recipe (``configs/<model>.yaml``), test the best checkpoint, return the run.

    ``overrides`` take the keys a user types after ``--`` on the command line, dotted:
    ``fit("deep", epochs=3, overrides={"data.train_subset": 5000, "model.lr": 2e-3})``.
    """
    return run_config(resolve_config(model, config=config, overrides=overrides, seed=seed, epochs=epochs, gpus=gpus,
                                     optimizer=optimizer, logdir=logdir, name=name, version=version, resume=resume),
                      callbacks=callbacks)


def with_transfer_base(cfg: dict[str, Any]) -> dict[str, Any]:
    """Point ``transfer`` at its MNIST-pretrained base, pretraining ``scratch`` on MNIST digits first if missing."""
    base = log_root(cfg) / PRETRAIN_CONFIG / TRANSFER_BASE
    if not base.is_file():
        print(f"transfer: no MNIST base at {base}; pretraining `scratch` on MNIST digits first")
        pretrain = load_config(CONFIG_DIR / f"{PRETRAIN_CONFIG}.yaml")
        for key in PRETRAIN_SHARED_KEYS:
            if key in cfg:
                shared = copy.deepcopy(cfg[key])
                if key == "trainer":  # same hardware and budget; its own logger name and callbacks
                    shared.pop("callbacks", None)
                    shared.pop("logger", None)
                    pretrain.setdefault("trainer", {}).update(shared)
                else:
                    pretrain[key] = shared
        for key in PRETRAIN_SHARED_DATA:
            if get_key(cfg, f"data.{key}") is not None:
                set_key(pretrain, f"data.{key}", get_key(cfg, f"data.{key}"))
        set_key(pretrain, "trainer.logger.init_args.save_dir", str(log_root(cfg)))
        set_key(pretrain, "trainer.logger.init_args.name", PRETRAIN_CONFIG)
        cli = FmnistCLI(args={"fit": pretrain})
        best = cli.trainer.checkpoint_callback.best_model_path if cli.trainer.checkpoint_callback else ""
        if cli.trainer.is_global_zero:
            base.parent.mkdir(parents=True, exist_ok=True)
            if best:
                copy_atomic(best, base)  # a transfer run reads it: never half a file
            else:
                cli.trainer.save_checkpoint(base)
        if cli.trainer.world_size > 1:
            cli.trainer.strategy.barrier()
    cfg = copy.deepcopy(cfg)
    set_key(cfg, "model.model_kwargs", {**(get_key(cfg, "model.model_kwargs") or {}),
                                        "base_checkpoint": str(base), "freeze_base": True})
    return cfg
