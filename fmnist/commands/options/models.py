"""``fmnist models [PATTERN]`` (= ``python train.py --list-models``): options."""

from __future__ import annotations

import argparse


def build_parser(prog: str = "fmnist models") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="The model catalog: name, trainable parameters, input, explained layer, source.")
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style filter on the names, e.g. 'cnn*'")
    return parser
