"""``fmnist train`` (= ``python train.py``): the ``--model NAME`` shorthand's options, read into typed values.

``fmnist train fit --config configs/deep.yaml [--trainer.* --model.* --data.*]`` (or ``validate``, ``test``,
``predict``) is LightningCLI itself: its line is passed through untouched (LightningCLI parses its own, the one
parser outside this package's ``commands/``). ``fmnist train --model deep [--gpus N] [--epochs E] [--seed S]
[--optimizer O] [--folds K [--fold i]] [--resume] [--logdir D] [--trainer.x V ...]`` is read here, once, into
:class:`Shorthand` and dotted overrides, without importing torch (the catalog names the models).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from fmnist.catalog import model_info
from fmnist.commands.options.errors import SentenceParser
from fmnist.commands.values import dotted_overrides
from fmnist.errors import FmnistError

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


def _integer(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes an integer, got {value!r}") from None


# The shorthand's own flags (everything else on its line is a dotted LightningCLI setting).
SHORTHAND_FLAGS: dict[str, dict[str, Any]] = {
    "--model": {"help": "model to train (see `fmnist models`); its recipe is configs/<model>.yaml"},
    "--gpus": {"type": _integer, "help": "GPUs (0 or absent: CPU; N > 1: DDP)"},
    "--epochs": {"type": _integer, "help": "epochs (default: the recipe's)"},
    "--optimizer": {"help": "adam, adamw, sgd, ... (default: the recipe's)"},
    "--seed": {"type": _integer, "help": "seed (default: the recipe's)"},
    "--resume": {"action": "store_true", "help": "continue the latest run of this model from its last checkpoint"},
    "--folds": {"type": _integer, "help": "K-fold cross-validation with K folds"},
    "--fold": {"type": _integer, "help": "only fold i of --folds K"},
    "--logdir": {"help": "root of the run folders (default lightning_logs)"},
}
EPILOG = """Any other --group.key VALUE on the line is a LightningCLI setting (e.g. --trainer.max_epochs 3).
--list-models: the model catalog (= fmnist models).
The full LightningCLI: {prog} fit --config configs/deep.yaml (also validate, test, predict); {prog} fit --help
lists every --trainer.*, --model.* and --data.* option (it imports Lightning: seconds)."""


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = SentenceParser(prog=prog, add_help=False, usage=f"{prog} --model NAME [options] [--group.key VALUE ...]"
                                                              f" | {prog} {{fit,validate,test,predict}} ...",
                            description="Train (and test) a model.", epilog=EPILOG.format(prog=prog),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag, options in SHORTHAND_FLAGS.items():
        parser.add_argument(flag, **options)
    return parser


def is_shorthand(argv: list[str]) -> bool:
    return bool(argv) and argv[0] not in SUBCOMMANDS and any(a.split("=", 1)[0] in SHORTHAND_FLAGS for a in argv)


def parse_shorthand(argv: list[str], prog: str = "train.py") -> Shorthand:
    """Read the shorthand's flags into typed values; everything else must be ``--group.key VALUE``."""
    known, rest = _parser(prog).parse_known_args(argv)
    if known.model is None:
        raise FmnistError("the shorthand needs --model NAME (see --list-models), or use `train.py fit --config ...`.")
    model_info(known.model)
    for flag, value, minimum in (("--epochs", known.epochs, 1), ("--folds", known.folds, 2), ("--fold", known.fold, 0),
                                 ("--gpus", known.gpus, 0), ("--seed", known.seed, 0)):
        if value is not None and value < minimum:
            raise FmnistError(f"{flag} must be at least {minimum}, got {value}.")
    if known.fold is not None and known.folds is None:
        raise FmnistError("--fold i needs --folds K (e.g. --folds 3 --fold 0).")
    return Shorthand(model=known.model, gpus=known.gpus, epochs=known.epochs, optimizer=known.optimizer,
                     seed=known.seed, resume=known.resume, folds=known.folds, fold=known.fold, logdir=known.logdir,
                     overrides=dotted_overrides(rest))


def parse(argv: list[str], prog: str = "fmnist train") -> argparse.Namespace:
    """What to do: list the models, train from the shorthand, or hand the line to LightningCLI."""
    if "--list-models" in argv:
        return argparse.Namespace(action="models", prog=prog)
    if argv and argv[0] not in SUBCOMMANDS and ("-h" in argv or "--help" in argv):
        print(_parser(prog).format_help())  # the shorthand's help, at once; `fit --help` is LightningCLI's
        raise SystemExit(0)
    if is_shorthand(argv):
        return argparse.Namespace(action="shorthand", shorthand=parse_shorthand(argv, prog), prog=prog)
    return argparse.Namespace(action="lightning", argv=argv, prog=prog)
