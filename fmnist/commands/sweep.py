"""``fmnist sweep --config ...`` (= ``python -m fmnist.sweep``): a hyperparameter sweep with Optuna."""

from __future__ import annotations

import argparse
import sys
import warnings

from fmnist.commands.values import pins
from fmnist.errors import FmnistError
from fmnist.sweep.report import summary_lines
from fmnist.sweep.runner import make_sweep, open_study, run_sweep, write_outputs
from fmnist.sweep.space import load_sweep


def run(args: argparse.Namespace) -> int:
    # Each trial hands LightningCLI a config dict while sys.argv holds this command's flags: expected here.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    try:
        if args.seeds and not args.final_fit:
            raise FmnistError("--seeds goes with --final-fit (the seeds of the final fit).")
        spec = load_sweep(args.config, name=args.name, pins=pins(args.fixed), check=not args.report_only)
        sweep = make_sweep(spec, trials=args.trials, storage=args.storage, out_dir=args.out, logdir=args.logdir,
                           heartbeat=args.heartbeat)
        if args.report_only:
            result = write_outputs(sweep, open_study(sweep, create=False))
        else:
            result = run_sweep(sweep, workers=args.workers, final=args.final_fit, seeds=args.seeds)
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
