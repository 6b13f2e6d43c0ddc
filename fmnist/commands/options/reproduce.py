"""``fmnist reproduce`` (= ``python -m fmnist.reproduce``): options."""

from __future__ import annotations

import argparse


def build_parser(prog: str = "fmnist reproduce") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Re-run both studies' experiments (resumable), recording each finished piece in the results "
                    "ledger, then write RESULTS.md, the HTML page and README's table from it.",
        epilog="experiments and groups: see --list",
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
