"""``fmnist VERB ...``: the one command line of the package, and the only place that parses one.

Every verb is one row of :data:`VERBS` (name, module, one-line summary); ``fmnist --help`` is generated from
that table. A verb is two small modules named by its row:

- ``fmnist/commands/options/<module>.py`` declares its options (``build_parser(prog)``) with light imports
  only (argparse, the standard library, :mod:`fmnist.commands.names`), so ``fmnist VERB --help`` answers
  before torch, Lightning, Captum or scikit-learn load;
- ``fmnist/commands/<module>.py`` does the work (``run(args) -> exit status``): it imports the Python API it
  calls -- and with it the heavy libraries -- at its top, and is imported only once the options are parsed.

Like git's or pip's subcommands, the verbs form a registry loaded on demand: the dispatcher imports a verb's
modules by name (:func:`importlib.import_module`) only when that verb runs, so the top-level help never pays
for any verb. ``train.py``, ``evaluate.py`` and ``python -m fmnist.<part>`` are shims onto these verbs
(:mod:`fmnist.commands.shims`).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from fmnist.commands.warm_client import handoff
from fmnist.errors import FmnistError
from fmnist.files import NO_SPACE, disk_error


class Verb:
    """One verb of ``fmnist``: its name, the stem of its two modules, and the line ``fmnist --help`` shows.

    A plain class, not a dataclass: ``dataclasses`` imports ``inspect`` (tens of ms), paid by every ``--help``.
    """

    __slots__ = ("name", "module", "summary")

    def __init__(self, name: str, module: str, summary: str) -> None:
        self.name, self.module, self.summary = name, module, summary

    def __repr__(self) -> str:
        return f"Verb({self.name!r}, {self.module!r}, {self.summary!r})"

    @property
    def options(self) -> str:
        return f"fmnist.commands.options.{self.module}"

    @property
    def work(self) -> str:
        return f"fmnist.commands.{self.module}"


VERBS: tuple[Verb, ...] = (
    Verb("train", "train", "train a model: --model NAME [--gpus N] ..., or LightningCLI's fit/validate/test/predict"),
    Verb("models", "models", "the model catalog: name, parameters, input, source (= train.py --list-models)"),
    Verb("evaluate", "evaluate", "full report for a run or checkpoint, --baseline NAME, or --dataset fashion-c"),
    Verb("compare", "compare", "one table and chart across runs, reports and baselines"),
    Verb("gradcam", "gradcam", "explanation figures (Grad-CAM, HiResCAM, guided Grad-CAM, occlusion, IG)"),
    Verb("explain-check", "explain_check", "sanity and faithfulness checks of the explanation maps"),
    Verb("predict", "predict", "classify photos: files, folders, CSVs, URLs, IIIF manifests"),
    Verb("ood", "ood", "out-of-distribution detection: AUROC, AUPR, FPR@95TPR per score and out-set"),
    Verb("ensemble", "ensemble", "average several runs' probabilities; report, corruptions, OOD"),
    Verb("calibrate", "calibrate", "fit a softmax temperature on the validation split, save it with the run"),
    Verb("stats", "stats", "image counts, class counts and pixel statistics of every split"),
    Verb("sweep", "sweep", "hyperparameter sweep with Optuna (= python -m fmnist.sweep)"),
    Verb("reproduce", "reproduce", "re-run the studies' experiments, write RESULTS.md and the page "
                                   "(= python -m fmnist.reproduce)"),
    Verb("page-check", "page_check", "render a results page in headless Chromium and count its drawn charts"),
    Verb("warm", "warm", "start/stop a preloaded server: later commands start in it in a fraction of a second"),
)
BY_NAME: dict[str, Verb] = {verb.name: verb for verb in VERBS}
STARTING = "stopped by {} while starting, before anything was written: run the same command again."


def help_text(prog: str = "fmnist", verbs: tuple[Verb, ...] = VERBS) -> str:
    """The top-level help, from the table alone (no verb module is imported)."""
    width = max(len(v.name) for v in verbs) + 2
    lines = [f"usage: {prog} VERB [options]", "", "verbs:"]
    lines += [f"  {v.name:<{width}}{v.summary}" for v in verbs]
    lines += ["", f"Run `{prog} VERB --help` for the options of each. `{prog} train ...` is `python train.py ...`; "
                  f"the evaluation verbs are also `python evaluate.py VERB ...`."]
    return "\n".join(lines)


def parse(verb: Verb, argv: list[str], prog: str) -> argparse.Namespace:
    """The verb's options, read by its light options module (``--help`` and usage errors end here)."""
    options = importlib.import_module(verb.options)
    if hasattr(options, "parse"):  # train: its own reading (LightningCLI's lines pass through untouched)
        return options.parse(argv, prog)
    return options.build_parser(prog).parse_args(argv)


def _stopped_while_starting(signum: int, frame: object) -> None:
    print(STARTING.format(signal.Signals(signum).name), file=sys.stderr)
    raise SystemExit(128 + signum)


def load(verb: Verb) -> ModuleType:
    """Import the verb's work module (seconds for torch); SIGTERM meanwhile is one sentence and 143, not a kill."""
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _stopped_while_starting) if main_thread else None
    try:
        return importlib.import_module(verb.work)
    except KeyboardInterrupt:
        print(STARTING.format("SIGINT"), file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def call(name: str, argv: list[str], prog: str | None = None) -> int:
    """Parse ``argv`` for verb ``name`` and run it; errors propagate (tests call this to see them)."""
    verb = BY_NAME[name]
    prog = prog or f"fmnist {name}"
    args = parse(verb, list(argv), prog)
    served = handoff(name, list(argv), prog)  # a warm server of this user's ran it (fmnist warm start)
    if served is not None:
        return served
    return int(load(verb).run(args) or 0)


def guarded(action: Callable[[], int]) -> int:
    """Run a verb; a user's mistake, a full disk or Ctrl-C is one line on stderr and a non-zero status."""
    try:
        return action()
    except FmnistError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk wherever it struck (outputs are written atomically: nothing half-written)
        if exc.errno not in NO_SPACE:
            raise
        print(f"error: {disk_error(Path(exc.filename or '.'), exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    """``fmnist VERB [options]``: the console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(help_text())
        return 0 if argv else 2
    if argv[0] not in BY_NAME:
        print(f"error: {argv[0]!r} is not an fmnist verb; choose one of: {', '.join(BY_NAME)} "
              f"(see `fmnist --help`).", file=sys.stderr)
        return 2
    return guarded(lambda: call(argv[0], argv[1:]))
