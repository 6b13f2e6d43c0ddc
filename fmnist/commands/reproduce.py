"""``fmnist reproduce`` (= ``python -m fmnist.reproduce``): run (or resume) the experiments, then write the pages."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fmnist.errors import FmnistError
from fmnist.reproduce.experiments import BUDGETS, EXPERIMENTS, GROUP_ALIASES, get_budget
from fmnist.reproduce.page import write_results
from fmnist.reproduce.run import reproduce
from fmnist.training.distributed import end_process_group


def run(args: argparse.Namespace) -> int:
    if args.list:
        for exp in EXPERIMENTS:
            print(f"{exp.name:20} {exp.kind:9} {exp.title}")
        print("\ngroups: " + ", ".join(GROUP_ALIASES))
        for spec in BUDGETS.values():
            print(f"\n--budget {spec.name}: {spec.description}")
        return 0
    if args.gpus < 0:
        raise FmnistError(f"--gpus must be 0 or more, got {args.gpus}.")
    started = time.perf_counter()
    repo = Path(args.repo) if args.repo else Path.cwd()
    ledger = Path(args.ledger) if args.ledger else repo / "results"
    if args.report_only:
        spec = get_budget(args.budget)
        if not ledger.is_dir():
            raise FmnistError(f"{ledger} holds no records: nothing to report; run the experiments first "
                              f"(python -m fmnist.reproduce --budget {spec.name}), or pass --ledger DIR.")
        path = write_results(ledger, spec, repo=repo, data_dir=args.data_dir)
    else:
        path = reproduce(args.budget, only=args.only, gpus=args.gpus, root=args.root, data_dir=args.data_dir,
                         report=not args.no_report, seeds=args.seeds, ledger=ledger, repo=repo)
    end_process_group()  # with --gpus N > 1 every rank ran the whole table in one process group
    print(f"finished in {time.perf_counter() - started:.0f} s" + (f"; wrote {path}" if path else ""))
    return 0
