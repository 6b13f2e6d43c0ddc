#!/usr/bin/env python
"""Evaluate, compare and explain models: see ``python evaluate.py --help`` (the same verbs as ``fmnist``)."""

import sys

from fmnist.commands.shims import evaluate_py

if __name__ == "__main__":
    sys.exit(evaluate_py())
