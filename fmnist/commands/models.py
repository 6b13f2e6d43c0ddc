"""``fmnist models`` (= ``python train.py --list-models``): the catalog, read without importing torch."""

from __future__ import annotations

import argparse

from fmnist.catalog import models_table


def run(args: argparse.Namespace) -> int:
    print(models_table(args.pattern))
    return 0
