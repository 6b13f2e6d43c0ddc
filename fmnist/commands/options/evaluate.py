"""``fmnist evaluate RUN | --baseline NAME`` (= ``python evaluate.py ...``): the report's options."""

from __future__ import annotations

import argparse

from fmnist.commands import names as N


def build_parser(prog: str = "fmnist evaluate") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Full evaluation report (metrics.json, confusion matrix, errors, calibration) for a trained "
                    "model, or fit and evaluate a scikit-learn baseline.",
        epilog="examples: evaluate.py lightning_logs/deep/version_0 | evaluate.py lightning_logs/deep/version_0 "
               "--dataset mnist | evaluate.py --baseline svm --n-jobs 2 | evaluate.py lightning_logs/deep/version_0 "
               "--dataset fashion-c --reference logreg",
    )
    parser.add_argument("target", nargs="?", metavar="RUN_DIR_OR_CKPT",
                        help="a training run folder (lightning_logs/<name>/version_k) or a .ckpt file")
    parser.add_argument("--baseline", metavar="NAME", help="logreg, svm, rf, knn or mlp instead of a checkpoint")
    parser.add_argument("--dataset", metavar="DATASET", default=None,  # checked against the live registry

                        help=f"data to evaluate on: {', '.join((*N.DATASETS, *N.CORRUPTED_SETS))} or a registered one "
                             "(default: the model's own; `mnist` = study B's cross-dataset test; "
                             "`fashion-c` = accuracy under each corruption, mean and mCE)")
    parser.add_argument("--split", choices=("test", "val"), default="test",
                        help="test set (default) or the run's stratified validation split")
    parser.add_argument("--out", metavar="DIR", help="report folder (default: reports/<name>)")
    parser.add_argument("--name", help="report name (default: derived from the run or baseline)")
    parser.add_argument("--data-dir", metavar="DIR", help="root holding FashionMNIST/raw and MNIST/raw")
    parser.add_argument("--low-confidence", type=float, default=N.DEFAULT_LOW_CONFIDENCE, metavar="P",
                        help="list predictions whose top probability is below P (default 0.8)")
    parser.add_argument("--bins", type=int, default=N.DEFAULT_BINS, help="calibration bins for ECE (default 15)")
    parser.add_argument("--top-k", type=int, nargs="+", default=list(N.DEFAULT_TOP_K), metavar="K",
                        help="top-k accuracies to report (default 2 3 5)")
    parser.add_argument("--max-errors", type=int, default=48, help="images in misclassified.png (default 48)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    parser.add_argument("--temperature", action="store_true",
                        help="apply the temperature saved by `evaluate.py calibrate` to the probabilities")
    robust = parser.add_argument_group("corrupted test sets (--dataset fashion-c)")
    robust.add_argument("--reference", default=N.DEFAULT_REFERENCE, metavar="RUN_BASELINE_OR_REPORT",
                        help="model whose errors normalise mCE: a baseline name, run folder, or an earlier "
                             "robustness report (folder or robustness.json); `none` = no mCE (default logreg)")
    robust.add_argument("--corruptions", nargs="+", choices=N.CORRUPTIONS, metavar="NAME",
                        help="only these corruptions (default: all 16)")
    robust.add_argument("--corruption-seed", type=int, default=0,
                        help="seed the corrupted set is generated with (default 0; written once under the data root)")
    deep = parser.add_argument_group("trained models")
    deep.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    deep.add_argument("--batch-size", type=int, default=1000, help="inference batch size (default 1000)")
    base = parser.add_argument_group("baselines")
    base.add_argument("--train-subset", type=int, metavar="N",
                      help="fit on a stratified subset of N of the 51,000 training images")
    base.add_argument("--n-jobs", type=int, default=-1, metavar="J", help="parallel jobs (default -1: all cores)")
    base.add_argument("--param", action="append", metavar="NAME=VALUE",
                      help="override a hyperparameter, e.g. --param C=5 (repeatable)")
    base.add_argument("--refit", action="store_true", help="fit again even if a saved estimator exists")
    base.add_argument("--artifacts", metavar="DIR", help="where fitted estimators are kept (artifacts/baselines)")
    base.add_argument("--calibration-size", type=int, default=2000, metavar="N",
                      help="validation images for the SVM's softmax temperature (default 2000)")
    return parser
