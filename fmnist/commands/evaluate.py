"""``fmnist evaluate RUN | --baseline NAME`` (= ``python evaluate.py ...``): the full evaluation report.

``--dataset fashion-c`` scores the model on every corruption of the corrupted test set instead
(:mod:`fmnist.evaluation.corruption_report`); ``--temperature`` applies the temperature saved by ``calibrate``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.table import Table

from fmnist.commands.values import parse_params
from fmnist.data.corrupted_sets import CORRUPTED_SETS
from fmnist.data.sources import DATASETS
from fmnist.errors import FmnistError
from fmnist.evaluation import robustness as R
from fmnist.evaluation.calibration import apply_temperature, load_temperature
from fmnist.evaluation.corruption_report import corruption_report
from fmnist.evaluation.predict import baseline_report_name, predict_baseline, predict_checkpoint, safe_name
from fmnist.evaluation.report import REPORTS_DIR, write_report
from fmnist.outputs import check_output, mark_output
from fmnist.terminal import console


def check(args: argparse.Namespace) -> None:
    """Combinations argparse cannot refuse on its own: one sentence each."""
    if args.dataset is not None and args.dataset not in (*DATASETS, *CORRUPTED_SETS):
        raise FmnistError(f"--dataset {args.dataset!r} is not a dataset; choose one of: "
                          f"{', '.join((*DATASETS, *CORRUPTED_SETS))}.")
    if args.target and args.baseline:
        raise FmnistError("give either a run folder/checkpoint or --baseline NAME, not both.")
    if not args.target and not args.baseline:
        raise FmnistError("nothing to evaluate: pass a run folder or checkpoint (e.g. lightning_logs/deep/version_0) "
                          "or --baseline NAME (logreg, svm, rf, knn, mlp).")
    if not 0.0 < args.low_confidence <= 1.0:
        raise FmnistError(f"--low-confidence must be in (0, 1], got {args.low_confidence}.")
    if args.bins < 1:
        raise FmnistError(f"--bins must be at least 1, got {args.bins}.")
    if args.target and not Path(args.target).exists():
        raise FmnistError(f"{args.target} does not exist; pass a run folder such as lightning_logs/deep/version_0 "
                          f"or a .ckpt file.")
    if args.target and (args.train_subset or args.param or args.refit):
        raise FmnistError("--train-subset, --param and --refit apply to --baseline only.")
    if args.dataset in CORRUPTED_SETS and args.split != "test":
        raise FmnistError(f"{args.dataset} corrupts the test set only; drop --split {args.split}.")


def print_summary(metrics: dict[str, Any], out_dir: Path) -> None:
    """A short rich summary: headline numbers and the most-confused pairs."""
    out = console()
    out.print(f"[bold]{metrics['name']}[/bold]: {metrics['model']} on {metrics['dataset']} {metrics['split']} "
              f"(n={metrics['n']:,})")
    table = Table(show_header=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("accuracy", f"{metrics['accuracy']:.4f}")
    table.add_row("macro F1", f"{metrics['macro']['f1']:.4f}")
    table.add_row("weighted F1", f"{metrics['weighted']['f1']:.4f}")
    for k, v in metrics["top_k_accuracy"].items():
        table.add_row(f"top-{k} accuracy", f"{v:.4f}")
    table.add_row("ECE", f"{metrics['ece']:.4f}")
    low = metrics["low_confidence"]
    table.add_row(f"confidence < {low['threshold']:g}", f"{low['count']:,} ({low['fraction']:.1%})")
    for key, value in (metrics.get("timing") or {}).items():
        if key.endswith("seconds") and value is not None:
            table.add_row(key.replace("_", " "), f"{value:.2f}")
    if metrics.get("training_test_acc") is not None:
        table.add_row("training run's test_acc", f"{metrics['training_test_acc']:.4f}")
    out.print(table)
    pairs = Table(title="most confused pairs")
    for column in ("true", "predicted", "count"):
        pairs.add_column(column, justify="right" if column == "count" else "left")
    for p in metrics["most_confused"][:5]:
        pairs.add_row(p["true_name"], p["predicted_name"], str(p["count"]))
    out.print(pairs)
    out.print(f"report: {out_dir}")


def run_corrupted(args: argparse.Namespace) -> int:
    """``--dataset fashion-c``: accuracy per corruption and severity, mean, mCE vs ``--reference``, figures."""
    options = {"params": parse_params(args.param), "train_subset": args.train_subset, "n_jobs": args.n_jobs,
               "refit": args.refit, "artifacts_dir": args.artifacts} if args.baseline else {}
    summaries, out_dir = corruption_report(
        args.target or args.baseline, dataset=args.dataset, reference=args.reference, corruptions=args.corruptions,
        corruption_seed=args.corruption_seed, name=args.name, out=args.out, data_dir=args.data_dir,
        device=args.device, batch_size=args.batch_size, temperature=args.temperature, n_bins=args.bins,
        plots=not args.no_plots, baseline_options=options, n_jobs=args.n_jobs, artifacts_dir=args.artifacts)
    R.print_table(summaries)
    console().print(f"report: {out_dir}")
    return 0


def run(args: argparse.Namespace) -> int:
    check(args)
    if args.out:  # before any work: never over a run, or over another command's report
        check_output(args.out, "robustness" if args.dataset in CORRUPTED_SETS else "evaluate", args.name)
    if args.dataset in CORRUPTED_SETS:
        return run_corrupted(args)
    if args.baseline:
        overrides = parse_params(args.param)
        dataset = args.dataset or "fashion"
        pred = predict_baseline(args.baseline, params=overrides, dataset=dataset, split=args.split,
                                data_dir=args.data_dir, train_subset=args.train_subset, n_jobs=args.n_jobs,
                                refit=args.refit, calibration_size=args.calibration_size,
                                artifacts_dir=args.artifacts)
        timing = pred.meta["timing"]
        how = f"reloaded from {pred.meta['artifact']}, fitted in" if pred.meta["reloaded"] else "fit"
        cpu = f" (CPU {timing['fit_cpu_seconds']:.2f} s)" if timing.get("fit_cpu_seconds") is not None else ""
        print(f"{args.baseline}: {how} {timing['fit_seconds']:.2f} s{cpu}, predict {timing['predict_seconds']:.2f} s "
              f"(CPU {timing['predict_cpu_seconds']:.2f} s) on {pred.n:,} images")
        name = args.name or baseline_report_name(args.baseline, dataset, args.split, args.train_subset, overrides)
    else:
        pred = predict_checkpoint(args.target, dataset=args.dataset, split=args.split, data_dir=args.data_dir,
                                  device=args.device, batch_size=args.batch_size)
        name = args.name or safe_name(f"{pred.meta['run']}_{pred.dataset}-{args.split}")
    if args.temperature:
        pred = apply_temperature(pred, load_temperature(pred.meta, pred.meta.get("run") or pred.model))
        name = args.name or f"{name}_T"
    out_dir = Path(args.out) if args.out else REPORTS_DIR / name
    check_output(out_dir, "evaluate", name)
    metrics = write_report(pred, out_dir, low_confidence=args.low_confidence, n_bins=args.bins,
                           top_k=args.top_k, max_errors=args.max_errors, plots=not args.no_plots, name=name)
    mark_output(out_dir, "evaluate", name)
    print_summary(metrics, out_dir)
    if metrics.get("training_test_acc") is not None and abs(metrics["training_test_acc"] - metrics["accuracy"]) > 1e-4:
        print(f"note: accuracy {metrics['accuracy']:.4f} differs from the training run's test_acc "
              f"{metrics['training_test_acc']:.4f} (another checkpoint or data?)")
    return 0
