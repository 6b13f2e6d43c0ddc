"""K-fold cross-validation: a fresh data module, LightningModule and Trainer for every fold.

One Trainer reused across folds leaks loop counters, early-stopping and optimizer state, so
later folds barely train; here each fold is a complete, independent ``fit`` through the same
resolved config, differing only in ``data.fold`` and the seed. Results of finished folds are
kept on disk, so a rerun skips them and ``--fold i`` runs can be spread over machines and merged --
but only while the resolved config and the fold count match the ones recorded in ``cv_config.json``
(anything else is refused with the difference named), and one process at a time holds the folder
(a file lock: a second CV on the same folder is refused, never allowed to delete live folds).
"""

from __future__ import annotations

import copy
import json
import shutil
import statistics
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from rich.table import Table

from fmnist.data.sources import load_dataset
from fmnist.data.splits import check_fold_count
from fmnist.errors import FmnistError
from fmnist.files import write_dict_csv_atomic, write_json_atomic
from fmnist.runs import check_folder_name
from fmnist.serialization import read_json_capped
from fmnist.terminal import console
from fmnist.training.api import get_key, log_root, run_config, run_name, set_key, with_transfer_base
from fmnist.training.stopping import STATUS_DIVERGED, TrainingDiverged, TrainingStopped

FIELDS = ("fold", "n_train", "n_val", "val_acc", "test_acc", "test_macro_f1", "epochs", "best_epoch", "seconds")


def fold_row(fold: int, metrics: dict[str, Any]) -> dict[str, Any]:
    return {"fold": fold, "n_train": metrics["n_train"], "n_val": metrics["n_val"], "val_acc": metrics["val_acc"],
            "test_acc": metrics["test_acc"], "test_macro_f1": metrics["test_macro_f1"], "epochs": metrics["epochs"],
            "best_epoch": metrics["best_epoch"], "seconds": metrics["wall_seconds"]}


def _diverged(metrics: dict[str, Any]) -> bool:
    return metrics.get("status") == STATUS_DIVERGED


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
    """Collect every finished fold's metrics.json into cv_results.json / .csv.

    A fold that diverged is listed under ``diverged`` with its sentence, never averaged with the others.
    """
    rows, diverged = [], []
    for fold in range(n_folds):
        path = cv_dir / f"fold_{fold}" / "metrics.json"
        if path.is_file():
            metrics = read_json_capped(path)
            if _diverged(metrics):
                diverged.append({"fold": fold, "message": metrics.get("message")})
            else:
                rows.append(fold_row(fold, metrics))
    summary = {"model": model, "folds": rows, "aggregate": aggregate(rows, n_folds), "diverged": diverged}
    write_json_atomic(cv_dir / "cv_results.json", summary)
    agg = summary["aggregate"]
    write_dict_csv_atomic(cv_dir / "cv_results.csv", FIELDS, [
        *rows, *({"fold": stat, "val_acc": agg["val_acc"][stat], "test_acc": agg["test_acc"][stat],
                  "test_macro_f1": agg["test_macro_f1"][stat]} for stat in ("mean", "std"))])
    return summary


def print_table(summary: dict[str, Any]) -> None:
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
    console().print(table)


CONFIG_FILE = "cv_config.json"
LOCK_FILE = ".cv.lock"


def _recorded_config(cfg: Mapping[str, Any], n_folds: int) -> dict[str, Any]:
    """What must match for finished folds to be reused: the resolved config (JSON-normalised) and K."""
    return json.loads(json.dumps({"n_folds": n_folds, "config": cfg}, sort_keys=True, default=str))


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [d for k in keys for d in _differences(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} before, {new!r} now"]


def check_or_record_config(cv_dir: Path, cfg: Mapping[str, Any], n_folds: int) -> None:
    """Refuse to mix folds of different settings; record the settings of a new CV folder."""
    recorded = _recorded_config(cfg, n_folds)
    path = cv_dir / CONFIG_FILE
    if path.is_file():
        try:
            previous = read_json_capped(path)
        except (OSError, ValueError):
            previous = None
        if previous != recorded:
            diff = _differences(previous, recorded) if isinstance(previous, dict) else ["unreadable record"]
            raise FmnistError(f"{cv_dir} holds folds of other settings ({'; '.join(diff[:4])}); delete that folder "
                              f"or pass another --logdir to start a clean cross-validation.")
        return
    finished = sorted(p.name for p in cv_dir.glob("fold_*/metrics.json"))
    if finished:
        raise FmnistError(f"{cv_dir} holds finished folds but no {CONFIG_FILE} saying how they were made; delete "
                          f"that folder or pass another --logdir to start a clean cross-validation.")
    write_json_atomic(path, recorded)


def run_cv(cfg: Mapping[str, Any], n_folds: int, only: int | None = None) -> dict[str, Any] | None:
    """Run (or resume) K-fold CV of the resolved ``fit`` config; returns the summary (rank 0) or None."""
    if n_folds < 2:
        raise FmnistError(f"--folds must be at least 2, got {n_folds}.")
    if only is not None and not 0 <= only < n_folds:
        raise FmnistError(f"--fold must be in 0..{n_folds - 1} for --folds {n_folds}, got {only}.")
    if get_key(cfg, "ckpt_path") is not None:
        raise FmnistError("--resume does not apply to --folds: rerunning the same command skips finished folds.")
    cfg = dict(cfg)
    check_folder_name("the run name", run_name(cfg))
    # K against the images, before anything is written: a refused CV leaves no folder or cv_config.json behind.
    check_fold_count(load_dataset(get_key(cfg, "data.dataset", "fashion"), get_key(cfg, "data.data_dir")).train_labels,
                     n_folds)
    if get_key(cfg, "model.model_name") == "transfer" and not get_key(cfg, "model.model_kwargs.base_checkpoint"):
        cfg = with_transfer_base(cfg)  # the MNIST base is shared: pretrained once, not per fold
    model = get_key(cfg, "model.model_name")
    cv_dir = log_root(cfg) / f"{run_name(cfg)}-cv"
    seed = int(get_key(cfg, "seed_everything", 42))
    cv_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(cv_dir / LOCK_FILE)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise FmnistError(f"another cross-validation is running in {cv_dir}; wait for it to finish (rerunning "
                          f"then skips its finished folds) or pass another --logdir.") from None
    try:
        check_or_record_config(cv_dir, cfg, n_folds)
        is_rank_zero = True
        for fold in ([only] if only is not None else range(n_folds)):
            fold_dir = cv_dir / f"fold_{fold}"
            if (fold_dir / "metrics.json").is_file():
                print(f"fold {fold}: {'diverged' if _diverged(read_json_capped(fold_dir / 'metrics.json')) else 'done'}"
                      f" already ({fold_dir / 'metrics.json'}), skipping")
                continue
            if fold_dir.exists():  # a fold interrupted mid-way (we hold the lock: nobody else is in it)
                shutil.rmtree(fold_dir)
            fold_cfg = copy.deepcopy(cfg)
            for key, value in {"data.n_folds": n_folds, "data.fold": fold,
                               "seed_everything": seed + fold,  # fresh, different initial weights per fold
                               "trainer.logger.init_args.name": cv_dir.name,
                               "trainer.logger.init_args.version": f"fold_{fold}"}.items():
                set_key(fold_cfg, key, value)
            print(f"fold {fold + 1}/{n_folds}: training a fresh model")
            try:
                run = run_config(fold_cfg)
            except TrainingDiverged as exc:  # its metrics.json says so; the other folds still run
                print(f"fold {fold}: {exc}", file=sys.stderr)
                continue
            except TrainingStopped as exc:
                exc.resume_hint = "run the same command again (finished folds are kept, this one starts over)"
                raise
            is_rank_zero = run.dir is not None and run.metrics is not None
        if not is_rank_zero:
            return None
        summary = write_results(cv_dir, model, n_folds)
        print_table(summary)
        print(f"wrote {cv_dir / 'cv_results.json'} and {cv_dir / 'cv_results.csv'}")
        if summary["diverged"]:
            folds = ", ".join(str(d["fold"]) for d in summary["diverged"])
            raise FmnistError(f"fold(s) {folds} of {n_folds} diverged (see their metrics.json); {cv_dir / 'cv_results.json'} "
                              f"averages only the {summary['aggregate']['folds_done']} fold(s) that finished, so it is "
                              f"not a {n_folds}-fold result: fix the recipe (e.g. a lower model.lr) and use a new "
                              f"--logdir.")
        return summary
    finally:
        lock.release()
