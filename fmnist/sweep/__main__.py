"""``python -m fmnist.sweep --config configs/sweeps/deep.yaml [--trials N] [--workers K] [--storage URL] ...``."""

from __future__ import annotations

import argparse
import re
import sys
import warnings

from fmnist.errors import FmnistError
from fmnist.sweep.report import summary_lines
from fmnist.sweep.runner import make_sweep, open_study, run_sweep, write_outputs
from fmnist.sweep.space import load_sweep
from fmnist.sweep.storage import DEFAULT_HEARTBEAT
from fmnist.training.cli import dotted_overrides


class _Parser(argparse.ArgumentParser):
    """argparse that raises the one-sentence error instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        flag = re.match(r"argument (--[\w-]+): (.*)", message)
        text = f"{flag.group(1)} {flag.group(2)}" if flag else message
        raise FmnistError(f"{text} (see `python -m fmnist.sweep --help`).")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m fmnist.sweep", description="Hyperparameter sweep with Optuna (docs/sweeps.md).")
    parser.add_argument("--config", required=True, help="sweep YAML, e.g. configs/sweeps/deep.yaml")
    parser.add_argument("--trials", type=int, help="finished trials wanted in the study (default: the YAML's trials)")
    parser.add_argument("--workers", type=int, default=1, help="local worker processes on the same study (default 1)")
    parser.add_argument("--storage", help="Optuna RDB URL (default: sqlite:///runs/sweeps/<name>/study.db); "
                                          "e.g. postgresql://user@host/db to share a study between machines")
    parser.add_argument("--name", help="study name (default: the YAML's name, else <file stem>-sweep)")
    parser.add_argument("--fixed", action="append", default=[], metavar="KEY=VALUE",
                        help="hold a key at one value for this study (removed from the space if searched); "
                             "repeatable, e.g. --fixed data.train_subset=2000 --name smoke")
    parser.add_argument("--out", help="folder for study.db, best.yaml and the report (default runs/sweeps/<name>)")
    parser.add_argument("--logdir", help="root of the trial folders (default: the base config's save_dir)")
    parser.add_argument("--heartbeat", type=int, default=DEFAULT_HEARTBEAT,
                        help="seconds between a trial's heartbeats; silent for 2x this long = stale, re-run")
    parser.add_argument("--final-fit", action="store_true",
                        help="retrain the best trial on train+val per seed and test it once")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds of the final fit (default: the YAML's final.seeds)")
    parser.add_argument("--report-only", action="store_true", help="run no trial; rewrite best.yaml and the report")
    return parser


def pins(items: list[str]) -> dict[str, object]:
    """``["data.train_subset=2000"]`` -> ``{"data.train_subset": 2000}`` (values read as YAML, as train.py does)."""
    bad = [item for item in items if "=" not in item or not item.split("=", 1)[0]]
    if bad:
        raise FmnistError(f"--fixed {bad[0]!r} must be KEY=VALUE, e.g. --fixed data.train_subset=2000.")
    return dotted_overrides([f"--{item}" for item in items])


def main(argv: list[str] | None = None) -> int:
    # Each trial hands LightningCLI a config dict while sys.argv holds this command's flags: expected here.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    try:
        args = build_parser().parse_args(argv)
        if args.seeds and not args.final_fit:
            raise FmnistError("--seeds goes with --final-fit (the seeds of the final fit).")
        spec = load_sweep(args.config, name=args.name, pins=pins(args.fixed), check=not args.report_only)
        sweep = make_sweep(spec, trials=args.trials, storage=args.storage, out_dir=args.out, logdir=args.logdir,
                           heartbeat=args.heartbeat)
        if args.report_only:
            result = write_outputs(sweep, open_study(sweep, create=False))
        else:
            result = run_sweep(sweep, workers=args.workers, final=args.final_fit, seeds=args.seeds)
    except FmnistError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to continue (finished trials are kept, the interrupted one "
              "is re-run)", file=sys.stderr)
        return 130
    for line in summary_lines(result.summary, result.final):
        print(line)
    if result.best_yaml:
        print(f"best config: {result.best_yaml} (python train.py fit --config {result.best_yaml})")
    print(f"report: {result.report['html']} and {result.report['markdown']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
