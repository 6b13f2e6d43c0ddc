"""``fmnist ensemble RUN1 RUN2 ...`` (= ``python evaluate.py ensemble``): several runs averaged as one model."""

from __future__ import annotations

import argparse

from fmnist.data.sources import DATASETS
from fmnist.errors import FmnistError
from fmnist.evaluation.ensemble import evaluate_ensemble, print_members
from fmnist.terminal import console


def run(args: argparse.Namespace) -> int:
    if args.dataset is not None and args.dataset not in DATASETS:
        raise FmnistError(f"--dataset {args.dataset!r} is not a dataset; choose one of: {', '.join(DATASETS)}.")
    summary = evaluate_ensemble(
        args.targets, out=args.out, dataset=args.dataset,
        corrupted=None if args.corrupted == "none" else args.corrupted, corruption_seed=args.corruption_seed,
        ood=[o for o in args.ood if o != "none"], fit_size=args.fit_size, temperature=args.temperature,
        calibrate=args.calibrate, name=args.name, data_dir=args.data_dir, device=args.device, n_jobs=args.n_jobs,
        bins=args.bins, plots=not args.no_plots)
    extra: dict[str, dict] = {}
    if "robustness" in summary:
        extra["mean corruption acc"] = {n: r["mean_accuracy"] for n, r in summary["robustness"].items()}
    for model, aurocs in summary.get("ood_auroc", {}).items():
        for column, value in aurocs.items():
            if column.endswith((" msp", " energy")):
                extra.setdefault(f"AUROC {column}", {})[model] = value
    print_members(summary["members"], summary["ensemble"], extra)
    if "calibration" in summary:
        c = summary["calibration"]
        console().print(f"ensemble temperature T = {c['temperature']:.4f} (val n={c['fitted_on']['n']:,}): test NLL "
                        f"{c['test']['before']['nll']:.4f} -> {c['test']['after']['nll']:.4f}, ECE "
                        f"{c['test']['before']['ece']:.4f} -> {c['test']['after']['ece']:.4f}")
    console().print(f"report: {summary['out']}")
    return 0
