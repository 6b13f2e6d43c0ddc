"""K-fold cross-validation: a fresh data module, LightningModule and Trainer for every fold.

One Trainer reused across folds leaks loop counters, early-stopping and optimizer state, so
later folds barely train; here each fold is a complete, independent ``fit`` through the same
CLI and resolved config, differing only in ``--data.fold`` and the seed. Results of finished
folds are kept on disk, so a rerun skips them and ``--fold i`` runs can be spread over
machines and merged.
"""

from __future__ import annotations

import csv
import json
import shutil
import statistics
from pathlib import Path
from typing import Any

from fmnist.errors import FmnistError

FIELDS = ("fold", "n_train", "n_val", "val_acc", "test_acc", "test_macro_f1", "epochs", "best_epoch", "seconds")


def _logger_name(args: list[str], model: str) -> str:
    """The run name the config would use (``--trainer.logger.init_args.name``), default the model name."""
    name = model
    for flag, value in zip(args, args[1:], strict=False):
        if flag == "--trainer.logger.init_args.name":
            name = value
    return name


def _seed(args: list[str]) -> int:
    seed = 42
    for flag, value in zip(args, args[1:], strict=False):
        if flag == "--seed_everything":
            seed = int(value)
    return seed


def fold_row(fold: int, metrics: dict[str, Any]) -> dict[str, Any]:
    return {"fold": fold, "n_train": metrics["n_train"], "n_val": metrics["n_val"], "val_acc": metrics["val_acc"],
            "test_acc": metrics["test_acc"], "test_macro_f1": metrics["test_macro_f1"], "epochs": metrics["epochs"],
            "best_epoch": metrics["best_epoch"], "seconds": metrics["wall_seconds"]}


def _mean_std(values: list[float]) -> dict[str, float | None]:
    return {"mean": statistics.fmean(values) if values else None,
            "std": statistics.stdev(values) if len(values) > 1 else 0.0 if values else None}


def aggregate(rows: list[dict[str, Any]], n_folds: int) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof=1) of validation and test accuracy over finished folds."""
    return {"n_folds": n_folds, "folds_done": len(rows),
            "val_acc": _mean_std([r["val_acc"] for r in rows]),
            "test_acc": _mean_std([r["test_acc"] for r in rows]),
            "test_macro_f1": _mean_std([r["test_macro_f1"] for r in rows])}


def write_results(cv_dir: Path, model: str, n_folds: int) -> dict[str, Any]:
    """Collect every finished fold's metrics.json into cv_results.json / .csv."""
    rows = []
    for fold in range(n_folds):
        path = cv_dir / f"fold_{fold}" / "metrics.json"
        if path.is_file():
            rows.append(fold_row(fold, json.loads(path.read_text())))
    summary = {"model": model, "folds": rows, "aggregate": aggregate(rows, n_folds)}
    (cv_dir / "cv_results.json").write_text(json.dumps(summary, indent=2) + "\n")
    with (cv_dir / "cv_results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
        agg = summary["aggregate"]
        for stat in ("mean", "std"):
            writer.writerow({"fold": stat, "val_acc": agg["val_acc"][stat], "test_acc": agg["test_acc"][stat],
                             "test_macro_f1": agg["test_macro_f1"][stat]})
    return summary


def print_table(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{summary['model']}: {summary['aggregate']['folds_done']}/{summary['aggregate']['n_folds']} folds")
    for column in ("fold", "n_train", "n_val", "val_acc", "test_acc", "macro_f1", "epochs", "seconds"):
        table.add_column(column, justify="right")
    for r in summary["folds"]:
        table.add_row(str(r["fold"]), str(r["n_train"]), str(r["n_val"]), f"{r['val_acc']:.4f}",
                      f"{r['test_acc']:.4f}", f"{r['test_macro_f1']:.4f}", str(r["epochs"]), f"{r['seconds']:.0f}")
    agg = summary["aggregate"]
    if agg["folds_done"]:
        table.add_row("mean ± std", "", "", f"{agg['val_acc']['mean']:.4f} ± {agg['val_acc']['std']:.4f}",
                      f"{agg['test_acc']['mean']:.4f} ± {agg['test_acc']['std']:.4f}",
                      f"{agg['test_macro_f1']['mean']:.4f}", "", "")
    Console().print(table)


def run_cv(args: list[str], options: dict[str, Any]) -> int:
    """Run (or resume) K-fold CV for the translated ``fit`` arguments of the shorthand."""
    from fmnist.cli import ensure_transfer_base, run_cli

    n_folds, only = options["folds"], options["fold"]
    if only is not None and not 0 <= only < n_folds:
        raise FmnistError(f"--fold must be in 0..{n_folds - 1} for --folds {n_folds}, got {only}.")
    if "--ckpt_path" in args:
        raise FmnistError("--resume does not apply to --folds: rerunning the same command skips finished folds.")
    if options["model"] == "transfer" and "--model.model_kwargs" not in args:
        args = ensure_transfer_base(args, options)  # the MNIST base is shared: pretrained once, not per fold
    name = f"{_logger_name(args, options['model'])}-cv"
    cv_dir = Path(options["logdir"]) / name
    seed = _seed(args)
    is_rank_zero = True
    for fold in ([only] if only is not None else range(n_folds)):
        fold_dir = cv_dir / f"fold_{fold}"
        if (fold_dir / "metrics.json").is_file():
            print(f"fold {fold}: done already ({fold_dir / 'metrics.json'}), skipping")
            continue
        if fold_dir.exists():  # a fold interrupted mid-way restarts from scratch
            shutil.rmtree(fold_dir)
        fold_args = args + [
            "--data.n_folds", str(n_folds), "--data.fold", str(fold),
            "--seed_everything", str(seed + fold),  # fresh, different initial weights per fold
            "--trainer.logger.init_args.name", name, "--trainer.logger.init_args.version", f"fold_{fold}",
        ]
        print(f"fold {fold + 1}/{n_folds}: training a fresh model")
        cli = run_cli(fold_args)
        is_rank_zero = cli.trainer.is_global_zero
        if cli.trainer.interrupted:
            raise KeyboardInterrupt
    if is_rank_zero:
        cv_dir.mkdir(parents=True, exist_ok=True)
        summary = write_results(cv_dir, options["model"], n_folds)
        print_table(summary)
        print(f"wrote {cv_dir / 'cv_results.json'} and {cv_dir / 'cv_results.csv'}")
    return 0
