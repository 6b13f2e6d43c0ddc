"""``fmnist ensemble RUN1 RUN2 ...`` (= ``python evaluate.py ensemble``): options."""

from __future__ import annotations

import argparse

from fmnist.commands import names as N


def build_parser(prog: str = "fmnist ensemble") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Average the class probabilities of several runs (or baselines) and evaluate the ensemble "
                    "like one model: full report, members table, corruption accuracy, OOD AUROC.",
        epilog="example: evaluate.py ensemble lightning_logs/deep/version_0 lightning_logs/deep/version_1 "
               "lightning_logs/deep/version_2 --ood mnist noise")
    parser.add_argument("targets", nargs="+", metavar="RUN_OR_BASELINE", help="run folders, .ckpt files or baselines")
    parser.add_argument("--dataset", metavar="DATASET", default=None,  # checked against the live registry
                        help=f"clean test set: {', '.join(N.DATASETS)} or a registered one (default: the members' own)")
    parser.add_argument("--corrupted", choices=(*N.CORRUPTED_SETS, "none"), default="fashion-c",
                        help="corrupted test set for corruption accuracy (default fashion-c; none = skip)")
    parser.add_argument("--corruption-seed", type=int, default=0, help="seed of the corrupted set (default 0)")
    parser.add_argument("--ood", nargs="+", default=["mnist"], metavar="SET",
                        help="OOD out-sets (see evaluate.py ood; default mnist; none = skip)")
    parser.add_argument("--fit-size", type=int, default=N.OOD_FIT_SIZE, metavar="N",
                        help="training images per member for the Mahalanobis score (default 10000)")
    parser.add_argument("--temperature", action="store_true",
                        help="apply each member's saved temperature (evaluate.py calibrate) before averaging")
    parser.add_argument("--calibrate", action="store_true",
                        help="fit one temperature on the ensemble's validation predictions; report before/after")
    parser.add_argument("--name", help="the ensemble's name (default ensemble-<model>x<k>)")
    parser.add_argument("--out", metavar="DIR", help="report folder (default reports/<name>)")
    parser.add_argument("--data-dir", metavar="DIR", help="root holding FashionMNIST/raw and MNIST/raw")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    parser.add_argument("--n-jobs", type=int, default=-1, help="baselines: parallel jobs (default -1)")
    parser.add_argument("--bins", type=int, default=N.DEFAULT_BINS, help="bins of the ECE (default 15)")
    parser.add_argument("--no-plots", action="store_true", help="skip the figures")
    return parser
