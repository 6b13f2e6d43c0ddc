"""The common evaluator: one predictions object in, one report folder out.

Deep checkpoints, scikit-learn baselines, K-fold folds and external photos all produce a
:class:`Predictions` (class probabilities ``[N, C]``, true labels, sample indices, dataset and
model names); :func:`write_report` turns it into the same report for all of them, so numbers are
comparable by construction::

    from fmnist.evaluation import Predictions, write_report
    preds = Predictions(probs, labels, indices, dataset="fashion", model="deep",
                        class_names=FASHION_CLASSES, split="test", images=uint8_images)
    metrics = write_report(preds, "reports/deep_v0_fashion-test")   # -> the metrics.json dict

Report folder: ``metrics.json`` (accuracy, macro/weighted precision/recall/F1, per-class rows,
confusion matrix, most-confused pairs, top-k, ECE, ...), ``classification_report.txt``,
``per_class.csv``, ``confusion_matrix.csv/.png``, ``confused_pairs.csv``, ``misclassified.csv/.png``,
``low_confidence.csv``, ``reliability.png`` and ``predictions.npz`` (reloadable with
:meth:`Predictions.load`). Metrics are computed from the confusion matrix in numpy; the tests
check them against scikit-learn's own functions.

Command line (``python evaluate.py ...``): a run folder or checkpoint, or ``--baseline NAME``.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmnist.errors import FmnistError
from fmnist.serialization import read_checkpoint

REPORTS_DIR = Path("reports")
DEFAULT_LOW_CONFIDENCE = 0.8
DEFAULT_BINS = 15
DEFAULT_TOP_K = (2, 3, 5)


# -- the predictions object -------------------------------------------------------------------------
@dataclass
class Predictions:
    """What every model produces and every report consumes.

    Attributes:
        probs: float32 ``[N, C]`` class probabilities (rows sum to 1).
        labels: int64 ``[N]`` true labels.
        indices: int64 ``[N]`` positions of the samples in their original split arrays
            (test set: 0..9999; ``val``: indices into the 60,000 training images).
        dataset: ``fashion``, ``mnist`` or any other source name (e.g. ``photos``).
        model: the model's name (``deep``, ``svm``, ...).
        class_names: names of the label classes, ``C`` of them.
        split: ``test``, ``val``, ``fold_2``, ...
        images: optional uint8 ``[N, 28, 28]`` images, for the misclassified grid.
        output_names: names of the model's output classes when they differ from ``class_names``
            (a Fashion-MNIST model scored on MNIST digits); default ``class_names``.
        meta: free-form facts about the source (checkpoint path, timings), copied into metrics.json.
    """

    probs: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    dataset: str
    model: str
    class_names: tuple[str, ...]
    split: str = "test"
    images: np.ndarray | None = None
    output_names: tuple[str, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.probs = _numpy(self.probs).astype(np.float32, copy=False)
        self.labels = _numpy(self.labels).astype(np.int64, copy=False).reshape(-1)
        self.indices = _numpy(self.indices).astype(np.int64, copy=False).reshape(-1)
        self.class_names = tuple(str(c) for c in self.class_names)
        if self.images is not None:
            self.images = _numpy(self.images)
            if self.images.ndim == 4 and self.images.shape[1] == 1:
                self.images = self.images[:, 0]
        if self.probs.ndim != 2:
            raise FmnistError(f"predictions of {self.model!r}: probs must be [N, C], got shape {self.probs.shape}.")
        n, c = self.probs.shape
        if len(self.labels) != n or len(self.indices) != n:
            raise FmnistError(f"predictions of {self.model!r}: {n} probability rows but {len(self.labels)} labels "
                              f"and {len(self.indices)} indices.")
        if self.images is not None and len(self.images) != n:
            raise FmnistError(f"predictions of {self.model!r}: {n} rows but {len(self.images)} images.")
        if len(self.class_names) != c:
            raise FmnistError(f"predictions of {self.model!r}: {c} probability columns but "
                              f"{len(self.class_names)} class names.")
        if n and (self.labels.min() < 0 or self.labels.max() >= c):
            raise FmnistError(f"predictions of {self.model!r}: labels must lie in 0..{c - 1}.")
        if self.output_names is not None:
            self.output_names = tuple(str(c) for c in self.output_names)

    @property
    def n(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return self.probs.shape[1]

    @property
    def preds(self) -> np.ndarray:
        """Predicted class = argmax of the probabilities (int64 ``[N]``)."""
        return self.probs.argmax(axis=1).astype(np.int64)

    @property
    def confidence(self) -> np.ndarray:
        """Probability of the predicted class."""
        return self.probs.max(axis=1)

    @property
    def correct(self) -> np.ndarray:
        return self.preds == self.labels

    @property
    def predicted_names(self) -> tuple[str, ...]:
        return self.output_names or self.class_names

    def save(self, path: str | Path) -> Path:
        """Write a compressed ``.npz`` (arrays + a JSON header), reloadable with :meth:`load`."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {"dataset": self.dataset, "model": self.model, "class_names": list(self.class_names),
                  "split": self.split, "output_names": list(self.output_names) if self.output_names else None,
                  "meta": self.meta}
        arrays = {"probs": self.probs, "labels": self.labels, "indices": self.indices,
                  "header": np.array(json.dumps(header, default=_json_default))}
        if self.images is not None:
            arrays["images"] = self.images
        np.savez_compressed(path, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Predictions:
        path = Path(path)
        if path.is_dir():
            path = path / "predictions.npz"
        if not path.is_file():
            raise FmnistError(f"no predictions file at {path}; run `python evaluate.py ...` to write a report first.")
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                return cls(probs=data["probs"], labels=data["labels"], indices=data["indices"],
                           dataset=header["dataset"], model=header["model"], class_names=tuple(header["class_names"]),
                           split=header["split"], images=data.get("images"),
                           output_names=tuple(header["output_names"]) if header.get("output_names") else None,
                           meta=header.get("meta") or {})
        except (OSError, ValueError, KeyError) as exc:
            raise FmnistError(f"{path} is not a predictions file written by fmnist ({exc}).") from None


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | set):
        return list(value)
    return str(value)


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


# -- the report folder ------------------------------------------------------------------------------
def _write_csv(path: Path, header: Sequence[str], rows: list[Sequence[Any]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


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
    (out / "classification_report.txt").write_text(f"{title}\n\n{report_text}")

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
        from fmnist import plots as P

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
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=_json_default) + "\n")
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


# -- producing predictions: deep checkpoints --------------------------------------------------------
def run_tag(model_name: str, checkpoint: Path, run_dir: Path | None) -> str:
    """``lightning_logs/deep/version_0`` -> ``deep_v0``; a bare checkpoint -> ``<model>_<file stem>``."""
    if run_dir is not None:
        match = re.fullmatch(r"version_(\d+)", run_dir.name)
        return f"{run_dir.parent.name}_v{match.group(1)}" if match else f"{run_dir.parent.name}_{run_dir.name}"
    return f"{model_name}_{checkpoint.stem}"


def latest_version(path: Path) -> Path:
    """``lightning_logs/deep`` (a run name holding ``version_k`` folders) -> its newest version with a checkpoint."""
    if not path.is_dir() or (path / "checkpoints").is_dir() or any(path.glob("*.ckpt")):
        return path
    versions = [p for p in path.glob("version_*") if re.fullmatch(r"version_\d+", p.name) and any(p.rglob("*.ckpt"))]
    return max(versions, key=lambda p: int(p.name.split("_")[1])) if versions else path


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def predict_checkpoint(path: str | Path, *, dataset: str | None = None, split: str = "test",
                       data_dir: str | None = None, device: str = "cpu",
                       batch_size: int = 1000) -> Predictions:
    """Predictions of a trained model (run folder or ``.ckpt``) on ``dataset``'s ``split``.

    ``split="val"`` rebuilds the training run's own stratified validation split from the
    data-module hyperparameters saved in the checkpoint, so the indices match training.
    """
    import torch

    from fmnist.checkpoints import load_trained
    from fmnist.data.datamodule import FashionMNISTDataModule
    from fmnist.data.sources import dataset_info, load_dataset
    from fmnist.models import count_parameters

    if split not in ("test", "val"):
        raise FmnistError(f"Unknown split {split!r}; choose test or val.")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    started = time.perf_counter()
    trained = load_trained(latest_version(Path(path)), map_location=device)
    raw = read_checkpoint(trained.checkpoint)
    data_hp = dict(raw.get("datamodule_hyper_parameters") or {})
    dataset = dataset or trained.dataset
    dataset_info(dataset)
    if data_dir is None and data_hp.get("data_dir") and Path(data_hp["data_dir"]).is_dir():
        data_dir = data_hp["data_dir"]  # where the run found its data
    load_seconds = time.perf_counter() - started
    data = load_dataset(dataset, data_dir)
    if split == "test":
        images, labels = data.test_images, data.test_labels
        indices = np.arange(len(labels))
    else:
        accepted = FashionMNISTDataModule.__init__.__code__.co_varnames
        hp = {k: v for k, v in data_hp.items() if k in accepted}
        hp.update(dataset=dataset, data_dir=data_dir)
        _, indices = FashionMNISTDataModule(**hp).split_indices(data.train_labels)
        index = torch.as_tensor(indices, dtype=torch.long)
        images, labels = data.train_images[index], data.train_labels[index]
    started = time.perf_counter()
    probs = trained.predict_proba(images, batch_size=batch_size)
    predict_seconds = time.perf_counter() - started
    model_classes = trained.class_names
    class_names = data.class_names
    run_metrics = _read_json(trained.run_dir / "metrics.json") if trained.run_dir else None
    tag = run_tag(trained.model_name, trained.checkpoint, trained.run_dir)
    meta: dict[str, Any] = {
        "kind": "cnn", "run": tag, "checkpoint": str(trained.checkpoint),
        "run_dir": str(trained.run_dir) if trained.run_dir else None, "trained_on": trained.dataset,
        "trainable_params": count_parameters(trained.module.model),
        "timing": {"load_seconds": round(load_seconds, 3), "predict_seconds": round(predict_seconds, 3),
                   "device": str(device)},
        "data_source": str(data.source),
    }
    if run_metrics:
        meta["train_seconds"] = run_metrics.get("wall_seconds")
        if dataset == trained.dataset and split == "test" and run_metrics.get("test_acc") is not None:
            meta["training_test_acc"] = run_metrics.get("test_acc")
            meta["training_test_macro_f1"] = run_metrics.get("test_macro_f1")
    return Predictions(probs=probs, labels=labels, indices=indices, dataset=dataset, model=trained.model_name,
                       class_names=class_names, split=split, images=images.numpy(),
                       output_names=model_classes if tuple(model_classes) != tuple(class_names) else None,
                       meta=meta)


# -- producing predictions: scikit-learn baselines --------------------------------------------------
def predict_baseline(name: str, *, params: dict[str, Any] | None = None, dataset: str = "fashion",
                     split: str = "test", data_dir: str | None = None, train_subset: int | None = None,
                     n_jobs: int | None = -1, refit: bool = False, calibration_size: int = 2000,
                     artifacts_dir: str | Path | None = None, log: Any = print) -> Predictions:
    """Fit (or reload) baseline ``name`` on the training split and predict ``split``."""
    from fmnist import baselines as B

    spec = B.get_baseline(name)
    resolved = B.resolve_params(spec, params)
    if split not in ("test", "val"):
        raise FmnistError(f"Unknown split {split!r}; choose test or val.")
    data = B.baseline_data(dataset, data_dir, train_subset)
    fitted = B.fit_or_load(name, resolved, data, train_subset=train_subset, calibration_size=calibration_size,
                           n_jobs=n_jobs, refit=refit, artifacts_dir=artifacts_dir or B.ARTIFACTS_DIR, log=log)
    X, y, indices, images = data.split(split)
    started, cpu_started = time.perf_counter(), time.process_time()
    probs = B.predict_proba(fitted, X, num_classes=len(data.class_names), n_jobs=n_jobs)
    predict_seconds, predict_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    meta: dict[str, Any] = {
        "kind": "baseline", "estimator": type(fitted.estimator).__name__, "params": resolved,
        "overrides": params or {}, "train_subset": train_subset, "n_train": fitted.n_train,
        "artifact": str(fitted.path) if fitted.path else None, "reloaded": fitted.loaded,
        "trainable_params": fitted.n_parameters, "train_seconds": round(fitted.fit_seconds, 3),
        "temperature": fitted.temperature, "calibration_size": fitted.calibration_size,
        "timing": {"fit_seconds": round(fitted.fit_seconds, 3), "predict_seconds": round(predict_seconds, 3),
                   "calibration_seconds": round(fitted.extra.get("calibration_seconds", 0.0), 3),
                   "fit_cpu_seconds": _round(fitted.extra.get("fit_cpu_seconds")),
                   "predict_cpu_seconds": round(predict_cpu, 3), "n_jobs": n_jobs},
        "n_iter": fitted.extra.get("n_iter"), "sklearn_version_fitted": fitted.sklearn_version,
        "benchmark_accuracy": spec.benchmark if dataset == "fashion" else None,
        "study_a_accuracy": spec.study_a if dataset == "fashion" else None,
    }
    return Predictions(probs=probs, labels=y, indices=indices, dataset=dataset, model=name,
                       class_names=data.class_names, split=split, images=images, meta=meta)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def baseline_report_name(name: str, dataset: str, split: str, train_subset: int | None,
                         overrides: dict[str, Any] | None) -> str:
    """``svm`` for the defaults on Fashion-MNIST test; suffixes only for what differs."""
    out = name
    if train_subset:
        out += f"-n{train_subset}"
    if overrides:
        out += "-" + "-".join(f"{k}{v}" for k, v in sorted(overrides.items()))
    if (dataset, split) != ("fashion", "test"):
        out += f"_{dataset}-{split}"
    return _safe_name(out)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", name).strip("_") or "report"


# -- command line -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evaluate.py",
        description="Full evaluation report (metrics.json, confusion matrix, errors, calibration) for a trained "
                    "model, or fit and evaluate a scikit-learn baseline.",
        epilog="examples: evaluate.py lightning_logs/deep/version_0 | evaluate.py lightning_logs/deep/version_0 "
               "--dataset mnist | evaluate.py --baseline svm --n-jobs 2",
    )
    parser.add_argument("target", nargs="?", metavar="RUN_DIR_OR_CKPT",
                        help="a training run folder (lightning_logs/<name>/version_k) or a .ckpt file")
    parser.add_argument("--baseline", metavar="NAME", help="logreg, svm, rf, knn or mlp instead of a checkpoint")
    parser.add_argument("--dataset", choices=("fashion", "mnist"), default=None,
                        help="data to evaluate on (default: the model's own; `mnist` = study B's cross-dataset test)")
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


def cli_main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _validate(args)
    if args.baseline:
        from fmnist.baselines import parse_params

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
        name = args.name or _safe_name(f"{pred.meta['run']}_{pred.dataset}-{args.split}")
    out_dir = Path(args.out) if args.out else REPORTS_DIR / name
    metrics = write_report(pred, out_dir, low_confidence=args.low_confidence, n_bins=args.bins,
                           top_k=args.top_k, max_errors=args.max_errors, plots=not args.no_plots, name=name)
    print_summary(metrics, out_dir)
    if metrics.get("training_test_acc") is not None and abs(metrics["training_test_acc"] - metrics["accuracy"]) > 1e-4:
        print(f"note: accuracy {metrics['accuracy']:.4f} differs from the training run's test_acc "
              f"{metrics['training_test_acc']:.4f} (another checkpoint or data?)")
    return 0


def console() -> Any:
    """Rich console; wide enough not to truncate columns when output goes to a file or pipe."""
    import sys

    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=160)
