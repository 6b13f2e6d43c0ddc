"""The seam of the package: class probabilities, labels, sample indices, dataset and model name.

Deep checkpoints, scikit-learn baselines, K-fold folds, corrupted test sets and photos all produce a
:class:`Predictions`; the evaluator, plots and reports only consume it, so numbers are comparable by
construction. Reloadable from ``predictions.npz`` without pickle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmnist.errors import FmnistError
from fmnist.files import json_text, write_atomic
from fmnist.serialization import MAX_TEXT_BYTES, too_large


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
        """Write a compressed ``.npz`` (arrays + a JSON header), reloadable with :meth:`load`; atomically."""
        path = Path(path)
        header = {"dataset": self.dataset, "model": self.model, "class_names": list(self.class_names),
                  "split": self.split, "output_names": list(self.output_names) if self.output_names else None,
                  "meta": self.meta}
        arrays = {"probs": self.probs, "labels": self.labels, "indices": self.indices,
                  "header": np.array(json_text(header, indent=None, default=json_default))}
        if self.images is not None:
            arrays["images"] = self.images
        return write_atomic(path, lambda handle: np.savez_compressed(handle, **arrays))

    @classmethod
    def load(cls, path: str | Path) -> Predictions:
        path = Path(path)
        if path.is_dir():
            path = path / "predictions.npz"
        if not path.is_file():
            raise FmnistError(f"no predictions file at {path}; run `python evaluate.py ...` to write a report first.")
        try:
            with np.load(path, allow_pickle=False) as data:
                size = data.zip.getinfo("header.npy").file_size  # its JSON, refused from its size when too large
                if size > MAX_TEXT_BYTES * 4:  # numpy stores the text as UTF-32
                    raise too_large(path, size, MAX_TEXT_BYTES * 4)
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


def json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | set):
        return list(value)
    return str(value)


