"""``fmnist page-check [PAGE]`` (= ``python -m fmnist.reproduce.html_check``): options."""

from __future__ import annotations

import argparse


def build_parser(prog: str = "fmnist page-check") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Render a results page in headless Chromium and count the charts Plotly drew.")
    parser.add_argument("page", nargs="?", default="docs/results/full/index.html")
    parser.add_argument("--screenshot", default=None, help="also save a PNG screenshot here")
    return parser
