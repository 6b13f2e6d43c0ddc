"""``fmnist stats`` (= ``python evaluate.py stats``): options."""

from __future__ import annotations

import argparse

from fmnist.commands import names as N


def build_parser(prog: str = "fmnist stats") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Per-split image counts, class counts and pixel statistics (0-255 scale).")
    parser.add_argument("--dataset", metavar="DATASET", default="all",  # checked against the live registry
                        help=f"{', '.join(N.DATASETS)}, a registered one, or all (default)")
    parser.add_argument("--data-dir", default=None, help="root holding FashionMNIST/raw and MNIST/raw")
    return parser
