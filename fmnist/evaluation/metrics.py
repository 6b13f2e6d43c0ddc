"""Metrics from predictions, in numpy from the confusion matrix (the tests check them against scikit-learn)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fmnist.predictions import Predictions

DEFAULT_LOW_CONFIDENCE = 0.8
DEFAULT_BINS = 15
DEFAULT_TOP_K = (2, 3, 5)

# -- metrics (numpy, from the confusion matrix) -----------------------------------------------------
def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """``cm[i, j]`` = samples of true class ``i`` predicted as ``j`` (int64 ``[C, C]``)."""
    return np.bincount(np.asarray(labels) * num_classes + np.asarray(preds),
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes).astype(np.int64)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den`` is 0 (scikit-learn's ``zero_division=0``)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def per_class_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1 and support from a confusion matrix."""
    tp = np.diag(cm).astype(np.float64)
    predicted, support = cm.sum(axis=0), cm.sum(axis=1)
    precision, recall = _safe_div(tp, predicted), _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def averages(scores: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Macro (unweighted mean over classes) and support-weighted averages of precision/recall/F1."""
    weights = scores["support"] / max(1, scores["support"].sum())
    return {kind: {m: float(np.mean(scores[m]) if kind == "macro" else np.sum(scores[m] * weights))
                   for m in ("precision", "recall", "f1")}
            for kind in ("macro", "weighted")}


def top_k_accuracy(probs: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of samples whose true class is among the ``k`` most probable ones."""
    if len(labels) == 0:
        return float("nan")
    top = np.argpartition(-probs, kth=min(k, probs.shape[1]) - 1, axis=1)[:, :k]
    return float(np.mean(np.any(top == np.asarray(labels)[:, None], axis=1)))


def calibration_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = DEFAULT_BINS) -> list[dict[str, float]]:
    """Equal-width confidence bins ``(lo, hi]``: count, mean confidence and accuracy in each."""
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        mask = which == b
        count = int(mask.sum())
        bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": count,
                     "confidence": float(confidence[mask].mean()) if count else None,
                     "accuracy": float(correct[mask].mean()) if count else None})
    return bins


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = DEFAULT_BINS) -> float:
    """ECE = sum over bins of (bin share) x |accuracy - mean confidence| (Guo et al. 2017)."""
    n = len(labels)
    if n == 0:
        return float("nan")
    return float(sum(b["count"] / n * abs(b["accuracy"] - b["confidence"])
                     for b in calibration_bins(probs, labels, n_bins) if b["count"]))


def most_confused(cm: np.ndarray, true_names: Sequence[str], pred_names: Sequence[str] | None = None,
                  k: int = 10) -> list[dict[str, Any]]:
    """The ``k`` largest off-diagonal cells: (true -> predicted, count), largest first."""
    pred_names = pred_names or true_names
    off = cm.astype(np.int64).copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:k]
    pairs = []
    for flat in order:
        i, j = divmod(int(flat), cm.shape[1])
        if off[i, j] == 0:
            break
        pairs.append({"true": i, "true_name": true_names[i], "predicted": j, "predicted_name": pred_names[j],
                      "count": int(off[i, j])})
    return pairs


def compute_metrics(pred: Predictions, *, low_confidence: float = DEFAULT_LOW_CONFIDENCE,
                    n_bins: int = DEFAULT_BINS, top_k: Sequence[int] = DEFAULT_TOP_K) -> dict[str, Any]:
    """All the numbers of a report, as a JSON-ready dict."""
    c = pred.num_classes
    preds, labels = pred.preds, pred.labels
    cm = confusion_matrix(labels, preds, c)
    scores = per_class_scores(cm)
    avg = averages(scores)
    n = pred.n
    correct_probs = pred.probs[np.arange(n), labels].astype(np.float64)
    low = pred.confidence < low_confidence
    return {
        "dataset": pred.dataset, "split": pred.split, "model": pred.model, "n": n, "num_classes": c,
        "class_names": list(pred.class_names),
        "accuracy": float(np.mean(preds == labels)) if n else float("nan"),
        "macro_f1": avg["macro"]["f1"],
        "macro": avg["macro"], "weighted": avg["weighted"],
        "per_class": [{"class": i, "name": pred.class_names[i], "precision": float(scores["precision"][i]),
                       "recall": float(scores["recall"][i]), "f1": float(scores["f1"][i]),
                       "support": int(scores["support"][i])} for i in range(c)],
        "confusion_matrix": cm.tolist(),
        "most_confused": most_confused(cm, pred.class_names, pred.predicted_names),
        "top_k_accuracy": {str(k): top_k_accuracy(pred.probs, labels, k) for k in top_k if 1 <= k < c},
        "ece": expected_calibration_error(pred.probs, labels, n_bins),
        "calibration_bins": n_bins,
        "nll": float(-np.mean(np.log(np.clip(correct_probs, 1e-12, None)))) if n else float("nan"),
        "n_errors": int(np.sum(preds != labels)),
        "low_confidence": {"threshold": low_confidence, "count": int(low.sum()),
                           "fraction": float(low.mean()) if n else 0.0,
                           "accuracy": float(np.mean(preds[low] == labels[low])) if low.any() else None},
        "mean_confidence": float(pred.confidence.mean()) if n else float("nan"),
    }


