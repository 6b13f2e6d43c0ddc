"""``fmnist compare RUN_OR_REPORT ...`` (= ``python evaluate.py compare``): options."""

from __future__ import annotations

import argparse

DEFAULT_OUT = "reports/compare"


def build_parser(prog: str = "fmnist compare") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="One table (markdown + CSV) and chart (PNG + interactive HTML) across runs and baselines.")
    parser.add_argument("paths", nargs="+", metavar="RUN_OR_REPORT",
                        help="run folders, report folders, K-fold folders, or folders holding them")
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help="output folder (reports/compare)")
    parser.add_argument("--sort", choices=("accuracy", "name", "none"), default="accuracy",
                        help="row order (default: accuracy, best first)")
    parser.add_argument("--title", default="Results at a glance")
    return parser
