"""What each reproduce piece puts into its ledger record: the numbers the pages show, read from the piece's outputs.

One builder per kind of piece. Each takes the files the piece just wrote (a run's ``metrics.json`` and
TensorBoard events, an evaluator report, ``cv_results.json``, ``ensemble.json``, ``explain_check.json``, a
photo summary) and keeps what RESULTS.md, the HTML page and README need, plus what a reviewer needs to trust
it. Paths on the machine that made a record are reduced to names relative to the run root: they mean nothing
on another machine.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fmnist.runs import read_json

CURVE_TAGS = ("val_acc", "val_loss", "train_acc", "train_loss", "lr-Adam", "lr-AdamW", "lr-SGD")
REPORT_KEYS = ("accuracy", "macro_f1", "macro", "weighted", "class_names", "confusion_matrix", "ece", "nll",
               "top_k_accuracy", "n", "n_errors", "mean_confidence", "low_confidence")
RUN_KEYS = ("test_acc", "test_macro_f1", "test_loss", "per_class_acc", "val_acc", "val_loss", "val_macro_f1",
            "epochs", "best_epoch", "trainable_params", "n_train", "n_val", "wall_seconds", "resumes",
            "epoch_seconds", "seconds_per_epoch", "status")
MOST_CONFUSED = 6


def relative_name(path: str | Path | None, root: Path) -> str | None:
    """``/home/x/runs/full/deep-s42/version_0/checkpoints/best.ckpt`` -> ``deep-s42/version_0/checkpoints/best.ckpt``."""
    if not path:
        return None
    path = Path(path)
    try:
        return path.resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return path.name


def read_curves(run_dir: Path) -> dict[str, list[float]]:
    """Per-epoch scalars from a run's TensorBoard events (the page's training curves)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not any(run_dir.glob("events.out.tfevents.*")):
        return {}
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags().get("scalars", []))
    return {tag.removeprefix("lr-").lower() if tag.startswith("lr-") else tag: [float(e.value) for e in acc.Scalars(tag)]
            for tag in CURVE_TAGS if tag in tags}


def report_section(report: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """An evaluator report, reduced to the numbers: per-class P/R/F1, confusion matrix, calibration, top-k."""
    if not report:
        return None
    kept = {key: report[key] for key in REPORT_KEYS if key in report}
    kept["per_class"] = [{k: row[k] for k in ("name", "precision", "recall", "f1", "support") if k in row}
                         for row in report.get("per_class", [])]
    kept["most_confused"] = [{k: row[k] for k in ("true_name", "predicted_name", "count")}
                             for row in report.get("most_confused", [])[:MOST_CONFUSED]]
    return kept


def data_files(source: Mapping[str, Any] | None) -> dict[str, str]:
    """``{"train_images": sha256, ...}`` from a run's data provenance."""
    files = (source or {}).get("files") or {}
    return {name: entry.get("sha256") for name, entry in files.items() if isinstance(entry, Mapping)}


def run_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {key: metrics[key] for key in RUN_KEYS if key in metrics}


def run_provenance(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The facts a run recorded about how it was made (the rest comes from :func:`fmnist.ledger.provenance`)."""
    return {"precision": metrics.get("precision"), "threads": metrics.get("machine"),
            "accelerator": metrics.get("accelerator"), "devices": metrics.get("devices"),
            "world_size": metrics.get("world_size"), "finished_at": metrics.get("finished_at"),
            "data_files": data_files(metrics.get("data_source")),
            "run_versions": {"torch": metrics.get("torch_version"), "lightning": metrics.get("lightning_version"),
                             "python": metrics.get("python_version")}}


def cv_metrics(summary: Mapping[str, Any]) -> dict[str, Any]:
    return {"folds": list(summary.get("folds", [])), "aggregate": summary.get("aggregate")}


def baseline_metrics(report: Mapping[str, Any]) -> dict[str, Any]:
    timing = report.get("timing") or {}
    return {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"], "n_train": report.get("n_train"),
            "fit_seconds": timing.get("fit_seconds"), "predict_seconds": timing.get("predict_seconds")}


def ensemble_metrics(summary: Mapping[str, Any]) -> dict[str, Any]:
    """An ``ensemble.json`` without the report folder's path."""
    return {key: value for key, value in summary.items() if key != "out"}


def explain_metrics(summary: Mapping[str, Any], root: Path) -> dict[str, Any]:
    """An ``explain_check.json`` with machine paths reduced to names under the run root."""
    kept = dict(summary)
    kept["checkpoint"] = relative_name(summary.get("checkpoint"), root)
    kept.pop("run_dir", None)
    return kept


def photo_metrics(summary: Mapping[str, Any]) -> dict[str, Any]:
    """A photo evaluation's accuracy and confusion matrix, per-class figures from its report."""
    report = read_json(Path(summary["report"]) / "metrics.json") if summary.get("report") else None
    return {"n": summary["n"], "accuracy": summary["accuracy"], "preprocess": summary["preprocess"],
            "class_names": summary["class_names"], "confusion_matrix": summary["confusion_matrix"],
            "report": report_section(report)}
