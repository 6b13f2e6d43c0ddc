"""``python train.py``: the full LightningCLI, or the ``--model NAME [--gpus N] ...`` shorthand.

``python train.py fit --config configs/deep.yaml [--trainer.* --model.* --data.*]`` (or ``validate``,
``test``, ``predict``) is LightningCLI itself. ``python train.py --model deep [--gpus N] [--epochs E]
[--seed S] [--optimizer O] [--folds K [--fold i]] [--resume] [--logdir D] [--trainer.x V ...]`` is read
here, once, into typed options and dotted overrides, and handed to :func:`fmnist.training.api.fit`
(or :func:`fmnist.training.cv.run_cv`).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fmnist.errors import FmnistError
from fmnist.files import NO_SPACE, disk_error
from fmnist.models import get_spec, models_table
from fmnist.training.api import fit, resolve_config
from fmnist.training.cv import run_cv
from fmnist.training.distributed import end_process_group
from fmnist.training.lightning_cli import FmnistCLI
from fmnist.training.stopping import TrainingStopped, sigterm_stops_training

SUBCOMMANDS = ("fit", "validate", "test", "predict")


@dataclass
class Shorthand:
    """The shorthand's options, typed, and the dotted LightningCLI overrides that followed them."""

    model: str
    gpus: int | None = None
    epochs: int | None = None
    optimizer: str | None = None
    seed: int | None = None
    resume: bool = False
    folds: int | None = None
    fold: int | None = None
    logdir: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)


class _Parser(argparse.ArgumentParser):
    """argparse that raises our one-sentence error instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        flag = re.match(r"argument (--[\w-]+): (.*)", message)
        text = f"{flag.group(1)} {flag.group(2)}" if flag else message
        raise FmnistError(f"{text} (see `python train.py --help`).")


def _integer(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes an integer, got {value!r}") from None


# The shorthand's own flags (everything else on its line is a dotted LightningCLI setting).
SHORTHAND_FLAGS: dict[str, dict[str, Any]] = {
    "--model": {}, "--gpus": {"type": _integer}, "--epochs": {"type": _integer}, "--optimizer": {},
    "--seed": {"type": _integer}, "--resume": {"action": "store_true"}, "--folds": {"type": _integer},
    "--fold": {"type": _integer}, "--logdir": {},
}


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="train.py", add_help=False)
    for flag, options in SHORTHAND_FLAGS.items():
        parser.add_argument(flag, **options)
    return parser


def dotted_overrides(rest: list[str]) -> dict[str, Any]:
    """``["--trainer.max_epochs", "3", "--data.augment.enabled=false"]`` -> ``{"trainer.max_epochs": 3, "data.augment.enabled": False}``.

    Values are read as YAML scalars or flow collections, as LightningCLI reads them.
    """
    overrides: dict[str, Any] = {}
    i = 0
    while i < len(rest):
        arg = rest[i]
        if not arg.startswith("--") or len(arg) < 3:
            raise FmnistError(f"unexpected argument {arg!r}; settings are written --group.key VALUE "
                              f"(e.g. --trainer.max_epochs 3).")
        key, sep, value = arg[2:].partition("=")
        if not sep:
            if i + 1 >= len(rest) or (rest[i + 1].startswith("--") and len(rest[i + 1]) > 2):
                raise FmnistError(f"--{key} needs a value (e.g. --{key} VALUE).")
            value = rest[i + 1]
            i += 1
        try:
            parsed = yaml.safe_load(value) if value != "" else ""
        except yaml.YAMLError:
            parsed = value
        if key.endswith("+"):  # LightningCLI's append (``--trainer.callbacks+=A --trainer.callbacks+=B``): keep all
            previous = overrides.get(key, [])
            overrides[key] = [*previous, *(parsed if isinstance(parsed, list) else [parsed])]
        else:
            overrides[key] = parsed
        i += 1
    return overrides


def parse_shorthand(argv: list[str]) -> Shorthand:
    """Read the shorthand's flags into typed values; everything else must be ``--group.key VALUE``."""
    known, rest = _parser().parse_known_args(argv)
    if known.model is None:
        raise FmnistError("the shorthand needs --model NAME (see --list-models), or use `train.py fit --config ...`.")
    get_spec(known.model)
    for flag, value, minimum in (("--epochs", known.epochs, 1), ("--folds", known.folds, 2), ("--fold", known.fold, 0),
                                 ("--gpus", known.gpus, 0), ("--seed", known.seed, 0)):
        if value is not None and value < minimum:
            raise FmnistError(f"{flag} must be at least {minimum}, got {value}.")
    if known.fold is not None and known.folds is None:
        raise FmnistError("--fold i needs --folds K (e.g. --folds 3 --fold 0).")
    return Shorthand(model=known.model, gpus=known.gpus, epochs=known.epochs, optimizer=known.optimizer,
                     seed=known.seed, resume=known.resume, folds=known.folds, fold=known.fold, logdir=known.logdir,
                     overrides=dotted_overrides(rest))


def run_shorthand(options: Shorthand) -> None:
    """Train one model (or its K folds) from the shorthand's typed options."""
    if options.folds:
        cfg = resolve_config(options.model, overrides=options.overrides, seed=options.seed, epochs=options.epochs,
                             gpus=options.gpus, optimizer=options.optimizer, logdir=options.logdir,
                             resume=options.resume)
        run_cv(cfg, options.folds, options.fold)
        return
    fit(options.model, overrides=options.overrides, seed=options.seed, epochs=options.epochs, gpus=options.gpus,
        optimizer=options.optimizer, logdir=options.logdir, resume=options.resume)


def _is_shorthand(argv: list[str]) -> bool:
    return bool(argv) and argv[0] not in SUBCOMMANDS and any(a.split("=", 1)[0] in SHORTHAND_FLAGS for a in argv)


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 done, 2 refused or diverged (one ``error:`` line), 128+N stopped by signal N (143, 130)."""
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with sigterm_stops_training():
            if "--list-models" in argv:
                print(models_table())
                return 0
            if _is_shorthand(argv):
                run_shorthand(parse_shorthand(argv))
            else:
                FmnistCLI(args=None if from_command_line else argv)  # the full LightningCLI reads its command line
            end_process_group()
        return 0
    except FmnistError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in NO_SPACE:
            raise
        print(f"error: {disk_error(Path(exc.filename or '.'), exc)}", file=sys.stderr)
        return 2
    except TrainingStopped as exc:
        print(exc.sentence(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; resume with --resume (or --ckpt_path last)", file=sys.stderr)
        return 130
