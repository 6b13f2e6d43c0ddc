"""``fmnist train`` (= ``python train.py``): train from the shorthand, or run LightningCLI on the line as given.

Exit status: 0 done, 2 refused or diverged (one ``error:`` line), 128+N stopped by signal N (143, 130).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator

from fmnist.catalog import models_table
from fmnist.commands.options.train import Shorthand
from fmnist.models import get_spec
from fmnist.training.api import fit, resolve_config
from fmnist.training.cv import run_cv
from fmnist.training.distributed import end_process_group
from fmnist.training.lightning_cli import FmnistCLI
from fmnist.training.stopping import TrainingStopped, sigterm_stops_training


def run_shorthand(options: Shorthand) -> None:
    """Train one model (or its K folds) from the shorthand's typed options."""
    get_spec(options.model)
    if options.folds:
        cfg = resolve_config(options.model, overrides=options.overrides, seed=options.seed, epochs=options.epochs,
                             gpus=options.gpus, optimizer=options.optimizer, logdir=options.logdir,
                             resume=options.resume)
        run_cv(cfg, options.folds, options.fold)
        return
    fit(options.model, overrides=options.overrides, seed=options.seed, epochs=options.epochs, gpus=options.gpus,
        optimizer=options.optimizer, logdir=options.logdir, resume=options.resume)


@contextlib.contextmanager
def command_line(prog: str, argv: list[str]) -> Iterator[None]:
    """LightningCLI reads ``sys.argv``: show it this verb's line (``prog`` + options), as if run on its own."""
    saved = sys.argv
    sys.argv = [prog, *argv]
    try:
        yield
    finally:
        sys.argv = saved


def run(args: argparse.Namespace) -> int:
    if args.action == "models":
        print(models_table())
        return 0
    try:
        with sigterm_stops_training():
            if args.action == "shorthand":
                run_shorthand(args.shorthand)
            else:
                with command_line(args.prog, args.argv):
                    FmnistCLI(args=None)  # the full LightningCLI reads its command line
            end_process_group()
        return 0
    except TrainingStopped as exc:
        print(exc.sentence(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; resume with --resume (or --ckpt_path last)", file=sys.stderr)
        return 130
