"""``python -m fmnist.reproduce``: run (or resume) the experiments, then write RESULTS.md and the HTML page."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fmnist.errors import FmnistError
from fmnist.reproduce.experiments import BUDGETS, BY_NAME, EXPERIMENTS, GROUP_ALIASES, get_budget
from fmnist.reproduce.page import write_results
from fmnist.reproduce.run import reproduce
from fmnist.training.distributed import end_process_group


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fmnist.reproduce",
        description="Re-run both studies' experiments (resumable), recording each finished piece in the results ledger, then write RESULTS.md, the HTML page and README's table from it.",
        epilog="experiments: " + ", ".join(BY_NAME) + "; groups: " + ", ".join(GROUP_ALIASES),
    )
    parser.add_argument("--budget", default="quick", help="quick (<30 min on a 2-core CPU) or full (the studies' "
                                                          "recipe, hours on a CPU)")
    parser.add_argument("--gpus", type=int, default=0, help="GPUs per training run (0: CPU)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these experiments (or groups)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="override the budget's seeds (e.g. --seeds 42 for one seed of a full-budget run)")
    parser.add_argument("--root", default=None, help="where run folders go (default runs/reproduce/<budget>); keep "
                                                      "it outside the repository for long budgets")
    parser.add_argument("--repo", default=None, help="the checkout whose results/, RESULTS*.md, README and "
                                                      "docs/results/ are written (default: the working directory)")
    parser.add_argument("--ledger", default=None,
                        help="where records go and pages are made from (default: <repo>/results)")
    parser.add_argument("--data-dir", default=None, help="dataset root (default: the usual search order)")
    parser.add_argument("--no-report", action="store_true", help="skip writing RESULTS.md and the HTML page")
    parser.add_argument("--report-only", action="store_true",
                        help="only rewrite RESULTS*.md, the HTML page and README's table from the ledger")
    parser.add_argument("--list", action="store_true", help="list the experiments and budgets, then exit")
    return parser


def cli_main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.list:
            for exp in EXPERIMENTS:
                print(f"{exp.name:20} {exp.kind:9} {exp.title}")
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
    except FmnistError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(cli_main())
