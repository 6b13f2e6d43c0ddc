"""``python evaluate.py RUN | --baseline NAME``: the full evaluation report from the command line.

``--dataset fashion-c`` scores the model on every corruption of the corrupted test set instead
(:mod:`fmnist.evaluation.robustness`); ``--temperature`` applies the temperature saved by
``evaluate.py calibrate``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fmnist.baselines import parse_params
from fmnist.data.corrupted_sets import CORRUPTED_SETS
from fmnist.data.corruptions import CORRUPTIONS
from fmnist.data.sources import DATASETS
from fmnist.errors import FmnistError
from fmnist.evaluation import robustness as R
from fmnist.evaluation.calibration import apply_temperature, load_temperature
from fmnist.evaluation.metrics import DEFAULT_BINS, DEFAULT_LOW_CONFIDENCE, DEFAULT_TOP_K
from fmnist.evaluation.predict import baseline_report_name, predict_baseline, predict_checkpoint, safe_name
from fmnist.evaluation.report import REPORTS_DIR, write_report
from fmnist.evaluation.scoring import load_scorer
from fmnist.outputs import check_output, mark_output
from fmnist.terminal import console


# -- command line -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evaluate.py",
        description="Full evaluation report (metrics.json, confusion matrix, errors, calibration) for a trained "
                    "model, or fit and evaluate a scikit-learn baseline.",
        epilog="examples: evaluate.py lightning_logs/deep/version_0 | evaluate.py lightning_logs/deep/version_0 "
               "--dataset mnist | evaluate.py --baseline svm --n-jobs 2 | evaluate.py lightning_logs/deep/version_0 "
               "--dataset fashion-c --reference logreg",
    )
    parser.add_argument("target", nargs="?", metavar="RUN_DIR_OR_CKPT",
                        help="a training run folder (lightning_logs/<name>/version_k) or a .ckpt file")
    parser.add_argument("--baseline", metavar="NAME", help="logreg, svm, rf, knn or mlp instead of a checkpoint")
    parser.add_argument("--dataset", choices=(*DATASETS, *CORRUPTED_SETS), default=None,
                        help="data to evaluate on (default: the model's own; `mnist` = study B's cross-dataset test; "
                             "`fashion-c` = accuracy under each corruption, mean and mCE)")
    parser.add_argument("--split", choices=("test", "val"), default="test",
                        help="test set (default) or the run's stratified validation split")
    parser.add_argument("--out", metavar="DIR", help="report folder (default: reports/<name>)")
    parser.add_argument("--name", help="report name (default: derived from the run or baseline)")
    parser.add_argument("--data-dir", metavar="DIR", help="root holding FashionMNIST/raw and MNIST/raw")
    parser.add_argument("--low-confidence", type=float, default=DEFAULT_LOW_CONFIDENCE, metavar="P",
                        help="list predictions whose top probability is below P (default 0.8)")
    parser.add_argument("--bins", type=int, default=DEFAULT_BINS, help="calibration bins for ECE (default 15)")
    parser.add_argument("--top-k", type=int, nargs="+", default=list(DEFAULT_TOP_K), metavar="K",
                        help="top-k accuracies to report (default 2 3 5)")
    parser.add_argument("--max-errors", type=int, default=48, help="images in misclassified.png (default 48)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    parser.add_argument("--temperature", action="store_true",
                        help="apply the temperature saved by `evaluate.py calibrate` to the probabilities")
    robust = parser.add_argument_group("corrupted test sets (--dataset fashion-c)")
    robust.add_argument("--reference", default=R.DEFAULT_REFERENCE, metavar="RUN_BASELINE_OR_REPORT",
                        help="model whose errors normalise mCE: a baseline name, run folder, or an earlier "
                             "robustness report (folder or robustness.json); `none` = no mCE (default logreg)")
    robust.add_argument("--corruptions", nargs="+", choices=tuple(CORRUPTIONS), metavar="NAME",
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


def _validate(args: argparse.Namespace) -> None:
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
    from rich.table import Table

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


def robustness_main(args: argparse.Namespace) -> int:
    """``--dataset fashion-c``: accuracy per corruption and severity, mean, mCE vs ``--reference``, figures."""
    options = {"params": parse_params(args.param), "train_subset": args.train_subset, "n_jobs": args.n_jobs,
               "refit": args.refit, "artifacts_dir": args.artifacts} if args.baseline else {}
    scorer = load_scorer(args.target or args.baseline, data_dir=args.data_dir, device=args.device,
                         batch_size=args.batch_size, temperature=args.temperature, **options)
    corrupted = dict(set_name=args.dataset, data_dir=args.data_dir, seed=args.corruption_seed,
                     corruptions=args.corruptions)
    preds = R.corrupted_predictions(scorer, **corrupted)
    summaries, reference = [], None
    if args.reference != "none":
        reference_path = Path(args.reference)
        if reference_path.suffix == ".json" or (reference_path / R.ROBUSTNESS_FILE).is_file():
            reference = R.read_reference(args.reference)
        else:
            ref_scorer = load_scorer(args.reference, data_dir=args.data_dir, device=args.device,
                                     batch_size=args.batch_size, n_jobs=args.n_jobs, artifacts_dir=args.artifacts)
            same = ref_scorer.name == scorer.name and not args.temperature
            ref_preds = preds if same else R.corrupted_predictions(ref_scorer, **corrupted)
            reference = R.reference_errors(R.robustness_summary(ref_preds, n_bins=args.bins))
            if ref_scorer.name != scorer.name:  # the reference's own column, next to the model's
                summaries.append(R.robustness_summary(ref_preds, reference, n_bins=args.bins))
    name = args.name or safe_name(f"{scorer.name}_{args.dataset}" + ("_T" if args.temperature else ""))
    summaries.insert(0, R.robustness_summary(preds, reference, name=scorer.name, n_bins=args.bins))
    out_dir = Path(args.out) if args.out else REPORTS_DIR / name
    check_output(out_dir, "robustness", name)
    R.write_robustness(summaries, out_dir, examples=preds, plots=not args.no_plots)
    mark_output(out_dir, "robustness", name)
    R.print_table(summaries)
    console().print(f"report: {out_dir}")
    return 0


def cli_main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _validate(args)
    if args.out:  # before any work: never over a run, or over another command's report
        check_output(args.out, "robustness" if args.dataset in CORRUPTED_SETS else "evaluate", args.name)
    if args.dataset in CORRUPTED_SETS:
        return robustness_main(args)
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
