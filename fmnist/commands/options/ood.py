"""``fmnist ood RUN ...`` (= ``python evaluate.py ood``): options."""

from __future__ import annotations

import argparse

from fmnist.commands import names as N


def build_parser(prog: str = "fmnist ood") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Out-of-distribution detection: AUROC, AUPR and FPR at 95%% TPR of max-softmax, energy, "
                    "max-logit and Mahalanobis scores, in-distribution test set vs each out-set. Several runs "
                    "are also scored as an ensemble.",
        epilog="examples: evaluate.py ood lightning_logs/deep/version_0 --in fashion --out mnist noise | "
               "evaluate.py ood RUN --out mnist photos=reports/photos/deep/inputs | evaluate.py ood logreg --out mnist")
    parser.add_argument("targets", nargs="+", metavar="RUN_OR_BASELINE",
                        help="run folders, .ckpt files or baseline names (several: also their ensemble)")
    parser.add_argument("--in", dest="in_dataset", metavar="DATASET", default=None,
                        help="in-distribution dataset, its test split (default: the model's own)")
    parser.add_argument("--out", nargs="+", default=["mnist"], metavar="SET",
                        help="out-sets: a dataset (mnist), noise, gaussian, a .npz with 'images' or a folder of "
                             "28x28 images, optionally named (photos=DIR) (default: mnist)")
    parser.add_argument("--scores", nargs="+", default=list(N.OOD_SCORES), choices=N.OOD_SCORES, metavar="SCORE",
                        help=f"detectors (default: all of {', '.join(N.OOD_SCORES)})")
    parser.add_argument("--fit-size", type=int, default=N.OOD_FIT_SIZE, metavar="N",
                        help="training images for the Mahalanobis means and covariance (default 10000)")
    parser.add_argument("--out-size", type=int, default=N.OOD_OUT_SIZE, metavar="N",
                        help="images in each noise out-set (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise sets and the Mahalanobis subset")
    parser.add_argument("--temperature", action="store_true",
                        help="apply each model's saved temperature (evaluate.py calibrate) to its probabilities")
    parser.add_argument("--data-dir", metavar="DIR", help="root holding FashionMNIST/raw and MNIST/raw")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    parser.add_argument("--n-jobs", type=int, default=-1, help="baselines: parallel jobs (default -1)")
    parser.add_argument("--report", metavar="DIR", help="report folder (default reports/<run>_ood)")
    parser.add_argument("--no-plots", action="store_true", help="skip the figures")
    return parser
