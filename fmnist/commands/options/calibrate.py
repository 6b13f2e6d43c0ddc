"""``fmnist calibrate RUN`` (= ``python evaluate.py calibrate``): options."""

from __future__ import annotations

import argparse

from fmnist.commands import names as N


def build_parser(prog: str = "fmnist calibrate") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Fit a softmax temperature on the run's validation split, save it with the run "
                    "(temperature.json) and report NLL/ECE before and after on validation and test. "
                    "Apply it later with --temperature (evaluate.py, ood, ensemble).")
    parser.add_argument("target", nargs="?", metavar="RUN_DIR_OR_CKPT", help="a training run folder or .ckpt file")
    parser.add_argument("--baseline", metavar="NAME", help="logreg, svm, rf, knn or mlp instead of a checkpoint")
    parser.add_argument("--data-dir", metavar="DIR", help="root holding FashionMNIST/raw")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    parser.add_argument("--bins", type=int, default=N.DEFAULT_BINS, help="bins of the ECE (default 15)")
    parser.add_argument("--n-jobs", type=int, default=-1, help="baselines: parallel jobs (default -1)")
    parser.add_argument("--out", metavar="DIR", help="report folder (default reports/<run>_calibration)")
    parser.add_argument("--no-plots", action="store_true", help="skip the reliability diagrams")
    return parser
