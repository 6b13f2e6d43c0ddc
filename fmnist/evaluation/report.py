"""One predictions object in, one report folder out (metrics.json, CSVs, figures, predictions.npz).

Report folder: ``metrics.json`` (accuracy, macro/weighted precision/recall/F1, per-class rows,
confusion matrix, most-confused pairs, top-k, ECE, ...), ``classification_report.txt``,
``per_class.csv``, ``confusion_matrix.csv/.png``, ``confused_pairs.csv``, ``misclassified.csv/.png``,
``low_confidence.csv``, ``reliability.png`` and ``predictions.npz`` (:meth:`Predictions.load`).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fmnist.evaluation.metrics import (
    DEFAULT_BINS,
    DEFAULT_LOW_CONFIDENCE,
    DEFAULT_TOP_K,
    calibration_bins,
    compute_metrics,
    most_confused,
)
from fmnist.figures import evaluation as P
from fmnist.files import write_csv_atomic, write_json_atomic, write_text_atomic
from fmnist.outputs import refuse_run_folder
from fmnist.predictions import Predictions, json_default


# -- the report folder ------------------------------------------------------------------------------
def _write_csv(path: Path, header: Sequence[str], rows: list[Sequence[Any]]) -> None:
    write_csv_atomic(path, header, rows)

REPORTS_DIR = Path("reports")  # default parent of report folders


def _fmt(x: float) -> str:
    return f"{x:.6f}"


def write_report(pred: Predictions, out_dir: str | Path, *, low_confidence: float = DEFAULT_LOW_CONFIDENCE,
                 n_bins: int = DEFAULT_BINS, top_k: Sequence[int] = DEFAULT_TOP_K, max_errors: int = 48,
                 plots: bool = True, save_predictions: bool = True, name: str | None = None,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the full report for ``pred`` into ``out_dir`` and return the ``metrics.json`` dict.

    Args:
        low_confidence: predictions whose top probability is below this go to ``low_confidence.csv``.
        n_bins: confidence bins of the ECE and the reliability diagram.
        top_k: the k of the top-k accuracies (those >= the number of classes are skipped).
        max_errors: most-confident misclassified images drawn in ``misclassified.png``.
        plots: draw the PNGs (off for speed in bulk use, e.g. one report per fold).
        save_predictions: write ``predictions.npz`` (for ``compare`` and later analysis).
        name: the report's name in tables (default: the folder name).
        extra: additional facts merged into metrics.json (timings, checkpoint, parameters).
    """
    from sklearn.metrics import classification_report

    out = Path(out_dir)
    refuse_run_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    computed = compute_metrics(pred, low_confidence=low_confidence, n_bins=n_bins, top_k=top_k)
    metrics = {"name": name or out.name, **computed}
    for key, value in {**pred.meta, **(extra or {})}.items():  # facts about the source; never the numbers
        metrics.setdefault(key, value)
    names, out_names = pred.class_names, pred.predicted_names
    preds, labels, conf = pred.preds, pred.labels, pred.confidence
    files = ["metrics.json", "classification_report.txt", "per_class.csv", "confusion_matrix.csv",
             "confused_pairs.csv", "misclassified.csv", "low_confidence.csv"]

    title = f"{metrics['name']}: {pred.model} on {pred.dataset} {pred.split} (n={pred.n:,})"
    report_text = classification_report(labels, preds, labels=list(range(pred.num_classes)), target_names=names,
                                        digits=4, zero_division=0)
    write_text_atomic(out / "classification_report.txt", f"{title}\n\n{report_text}")

    rows = [[r["class"], r["name"], _fmt(r["precision"]), _fmt(r["recall"]), _fmt(r["f1"]), r["support"]]
            for r in metrics["per_class"]]
    for kind in ("macro", "weighted"):
        rows.append(["", f"{kind} avg", *(_fmt(metrics[kind][m]) for m in ("precision", "recall", "f1")), pred.n])
    _write_csv(out / "per_class.csv", ["class", "name", "precision", "recall", "f1", "support"], rows)

    cm = np.asarray(metrics["confusion_matrix"])
    _write_csv(out / "confusion_matrix.csv", ["true \\ predicted", *out_names],
               [[names[i], *cm[i].tolist()] for i in range(len(names))])
    _write_csv(out / "confused_pairs.csv", ["true", "true_name", "predicted", "predicted_name", "count"],
               [[p["true"], p["true_name"], p["predicted"], p["predicted_name"], p["count"]]
                for p in most_confused(cm, names, out_names, k=cm.size)])

    wrong = np.flatnonzero(preds != labels)
    wrong = wrong[np.argsort(-conf[wrong], kind="stable")]  # most confident mistakes first
    p_true = pred.probs[np.arange(pred.n), labels]
    _write_csv(out / "misclassified.csv",
               ["index", "true", "true_name", "predicted", "predicted_name", "confidence", "p_true"],
               [[int(pred.indices[i]), int(labels[i]), names[labels[i]], int(preds[i]), out_names[preds[i]],
                 _fmt(conf[i]), _fmt(p_true[i])] for i in wrong])
    low = np.flatnonzero(conf < low_confidence)
    low = low[np.argsort(conf[low], kind="stable")]  # least confident first
    _write_csv(out / "low_confidence.csv",
               ["index", "true", "true_name", "predicted", "predicted_name", "confidence", "correct"],
               [[int(pred.indices[i]), int(labels[i]), names[labels[i]], int(preds[i]), out_names[preds[i]],
                 _fmt(conf[i]), int(preds[i] == labels[i])] for i in low])

    if plots:

        P.confusion_heatmap(cm, names, out / "confusion_matrix.png", title=title, col_names=out_names)
        files.append("confusion_matrix.png")
        bins = calibration_bins(pred.probs, labels, n_bins)
        P.reliability_diagram(bins, metrics["ece"], out / "reliability.png", title=title)
        files.append("reliability.png")
        if pred.images is not None and len(wrong):
            shown = wrong[:max_errors]
            P.misclassified_grid(pred.images[shown], [names[labels[i]] for i in shown],
                                 [out_names[preds[i]] for i in shown], conf[shown].tolist(),
                                 out / "misclassified.png", title=f"{title}: most confident errors",
                                 indices=pred.indices[shown].tolist())
            files.append("misclassified.png")
    if save_predictions:
        pred.save(out / "predictions.npz")
        files.append("predictions.npz")
    metrics["files"] = files
    metrics["report_dir"] = str(out)
    metrics["versions"] = _versions()
    metrics["created"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    write_json_atomic(out / "metrics.json", metrics, default=json_default)
    return metrics


def _versions() -> dict[str, str]:
    import sklearn

    versions = {"python": platform.python_version(), "numpy": np.__version__, "sklearn": sklearn.__version__}
    try:
        import torch

        versions["torch"] = torch.__version__
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return versions


