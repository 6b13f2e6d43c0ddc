#!/usr/bin/env python
"""Evaluate, compare and explain models: see ``python evaluate.py --help``."""

import sys

from fmnist.cli import main

if __name__ == "__main__":
    sys.exit(main())
