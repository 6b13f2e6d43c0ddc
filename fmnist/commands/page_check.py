"""``fmnist page-check [PAGE]`` (= ``python -m fmnist.reproduce.html_check``): did the page's charts draw?"""

from __future__ import annotations

import argparse

from fmnist.reproduce.html_check import render


def run(args: argparse.Namespace) -> int:
    result = render(args.page, args.screenshot)
    print(f"{args.page}: {result.drawn}/{result.charts} charts drawn; script errors: {result.errors or 'none'}"
          + (f"; screenshot {result.screenshot}" if result.screenshot else ""))
    return 0 if result.ok else 1
