"""``fmnist ood RUN ...`` (= ``python evaluate.py ood``): out-of-distribution detection, one table per run."""

from __future__ import annotations

import argparse
from pathlib import Path

from fmnist.data.sources import DATASETS
from fmnist.errors import FmnistError
from fmnist.evaluation.ood import detect, print_table, write_ood
from fmnist.evaluation.predict import safe_name
from fmnist.evaluation.report import REPORTS_DIR
from fmnist.evaluation.scoring import load_scorer
from fmnist.outputs import check_output, mark_output
from fmnist.terminal import console


def run(args: argparse.Namespace) -> int:
    if args.fit_size < 20:
        raise FmnistError(f"--fit-size must be at least 20 training images, got {args.fit_size}.")
    if args.in_dataset is not None and args.in_dataset not in DATASETS:
        raise FmnistError(f"--in {args.in_dataset!r} is not a dataset; choose one of: {', '.join(DATASETS)}.")
    if args.report:
        check_output(args.report, "ood")
    scorers = [load_scorer(t, data_dir=args.data_dir, device=args.device, temperature=args.temperature,
                           n_jobs=args.n_jobs) for t in args.targets]
    result = detect(scorers, in_dataset=args.in_dataset, out=args.out, names=args.scores, fit_size=args.fit_size,
                    data_dir=args.data_dir, out_size=args.out_size, seed=args.seed)
    name = "+".join(s.name for s in scorers) if len(scorers) <= 3 else f"ensemble{len(scorers)}_{scorers[0].name}"
    out = Path(args.report) if args.report else REPORTS_DIR / safe_name(f"{name}_ood")
    check_output(out, "ood")
    write_ood(result, out, plots=not args.no_plots)
    mark_output(out, "ood")
    print_table(result)
    console().print(f"report: {out}")
    return 0
