"""The steps figure: photo -> garment mask -> 28x28 model input -> prediction, for right and wrong cases.

One row per photo, so a reader sees where a wrong answer came from: a mask that missed
the garment, a frame that distorted it, or a model that misread a fair input.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from fmnist.files import save_figure_atomic


class Preprocessed(Protocol):
    """What the figure reads of a preprocessed photo (:class:`fmnist.photos.preprocess.Preprocessed` is one)."""

    pixels: np.ndarray  # uint8 [28, 28] model input
    mask: np.ndarray | None  # bool garment mask on ``work``
    work: np.ndarray | None  # uint8 RGB photo the mask was computed on


def pick_rows(labels: Sequence[int | None], predicted: Sequence[int], per_kind: int = 6) -> list[int]:
    """Indices to show: up to ``per_kind`` right and ``per_kind`` wrong labelled photos, taking the true
    classes in turn (so one large class does not fill the figure), or the first ``2 * per_kind`` photos
    when none is labelled."""
    chosen: list[int] = []
    for want_right in (True, False):
        by_class: dict[int, list[int]] = {}
        for i, (y, p) in enumerate(zip(labels, predicted, strict=True)):
            if y is not None and (y == p) == want_right:
                by_class.setdefault(y, []).append(i)
        queues = [by_class[k] for k in sorted(by_class)]
        picked: list[int] = []
        while len(picked) < per_kind and any(queues):
            for queue in queues:
                if queue and len(picked) < per_kind:
                    picked.append(queue.pop(0))
        chosen += sorted(picked)
    if not chosen:
        return list(range(min(len(labels), 2 * per_kind)))
    return chosen


class StepsSample:
    """Keeps the segmentation steps of a few right and wrong photos per class, drops everyone else's.

    ``predict`` streams photos and keeps only each 28x28 input; the photo and mask of a photo
    (~100 KB) are kept here only while it may belong to the figure's sample (at most ``per_class``
    per true class and outcome), so memory stays flat.
    """

    def __init__(self, per_kind: int = 6, per_class: int = 2) -> None:
        self.per_kind, self.per_class = per_kind, per_class
        self.kept: list[tuple[Preprocessed, np.ndarray, int | None, str]] = []
        self.counts: dict[tuple[int | None, bool], int] = {}

    def offer(self, item: Preprocessed, probs: np.ndarray, label: int | None, name: str) -> None:
        """Keep ``item`` if its class and outcome still have room; free its photo and mask otherwise."""
        key = (label, label is not None and int(np.argmax(probs)) == label)
        room = 2 * self.per_kind if label is None else self.per_class
        if item.work is not None and self.counts.get(key, 0) < room:
            self.counts[key] = self.counts.get(key, 0) + 1
            self.kept.append((item, probs, label, name))
        else:
            item.work, item.mask = None, None

    def save(self, class_names: Sequence[str], path: Path) -> Path | None:
        """The figure for the kept photos; None when no recipe kept a photo (``plain``, ``ours``)."""
        if not self.kept:
            return None
        items, probs, labels, names = zip(*self.kept, strict=True)
        return save_steps_figure(items, np.stack(probs), labels, class_names, path, names, self.per_kind)


def save_steps_figure(inputs: Sequence[Preprocessed], probs: np.ndarray, labels: Sequence[int | None],
                      class_names: Sequence[str], path: Path, names: Sequence[str] | None = None,
                      per_kind: int = 6) -> Path:
    """Write the figure (PNG) for a sample of right and wrong photos (see :func:`pick_rows`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    predicted = [int(np.argmax(p)) for p in probs]
    rows = pick_rows(labels, predicted, per_kind)
    fig, axes = plt.subplots(max(1, len(rows)), 3, figsize=(6.0, 2.1 * max(1, len(rows))), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, title in zip(axes[0], ("photo", "segmentation", "28x28 model input"), strict=True):
        ax.set_title(title, fontsize=8)
    for row, index in enumerate(rows):
        item, label, guess = inputs[index], labels[index], predicted[index]
        photo_ax, mask_ax, input_ax = axes[row]
        if item.work is not None:
            photo_ax.imshow(item.work)
            shown = item.work.astype(np.float32) * 0.25
            if item.mask is not None:
                shown[item.mask] = item.work[item.mask]
            mask_ax.imshow(shown.astype(np.uint8))
        input_ax.imshow(item.pixels, cmap="gray", vmin=0, vmax=255)
        verdict = "" if label is None else (" right" if label == guess else f"\ntrue: {class_names[label]}")
        colour = "black" if label is None else ("tab:green" if label == guess else "tab:red")
        input_ax.text(1.05, 0.5, f"{class_names[guess]}\n{probs[index][guess]:.0%}{verdict}", fontsize=7,
                      color=colour, transform=input_ax.transAxes, va="center")
        if names is not None:
            photo_ax.text(0.0, -0.08, str(names[index])[-30:], fontsize=5, transform=photo_ax.transAxes, va="top")
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=110)
    plt.close(fig)
    return path
