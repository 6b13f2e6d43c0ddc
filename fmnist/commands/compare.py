"""``fmnist compare RUN_OR_REPORT ...`` (= ``python evaluate.py compare``): one table and chart across runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from fmnist.evaluation.compare import collect, print_table, write_outputs
from fmnist.outputs import check_output, mark_output


def run(args: argparse.Namespace) -> int:
    check_output(args.out, "compare")
    rows = collect(args.paths)
    if args.sort == "accuracy":
        rows.sort(key=lambda r: -(r["accuracy"] if r["accuracy"] is not None else -1.0))
    elif args.sort == "name":
        rows.sort(key=lambda r: r["name"])
    files = write_outputs(rows, Path(args.out), args.title)
    mark_output(args.out, "compare")
    print_table(rows)
    print("wrote " + ", ".join(str(f) for f in files))
    return 0
