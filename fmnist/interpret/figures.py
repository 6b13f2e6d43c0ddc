"""Figures of explanations: the study's three panels (original, heatmap, overlay) per image, and grids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fmnist.interpret.gradcam import GradCamResult

# ----------------------------------------------------------------------------- figures


@dataclass
class Explained:
    """One image ready to draw."""

    image: np.ndarray  # float [H, W] in [0, 1]
    cam: np.ndarray  # float [H, W] in [0, 1]
    predicted: str
    confidence: float
    true: str | None = None
    target: str | None = None  # the explained class when it is not the prediction
    title: str = ""  # e.g. "#1234" or a file name


def _headline(item: Explained, short: bool = False) -> tuple[str, str]:
    """Title text and colour (green correct, red wrong, black unlabelled)."""
    first = " ".join(p for p in (item.title, f"true: {item.true}" if item.true is not None else "") if p)
    second = f"pred: {item.predicted} ({item.confidence:.0%})"
    if item.target is not None and item.target != item.predicted:
        second += f", CAM for {item.target}"
    text = "\n".join(p for p in (first, second) if p) if short else "   ".join(p for p in (first, second) if p)
    colour = "black" if item.true is None else ("tab:green" if item.true == item.predicted else "tab:red")
    return text, colour


def _draw(axes: Sequence, item: Explained, fontsize: float = 9) -> None:
    axes[0].imshow(item.image, cmap="gray", vmin=0, vmax=1)
    axes[1].imshow(item.cam, cmap="jet", vmin=0, vmax=1)
    axes[2].imshow(item.image, cmap="gray", vmin=0, vmax=1)
    axes[2].imshow(item.cam, cmap="jet", vmin=0, vmax=1, alpha=0.45)
    for ax, name in zip(axes, ("original", "Grad-CAM", "overlay"), strict=True):
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(name, fontsize=fontsize)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(item: Explained, path: Path, dpi: int = 100) -> Path:
    """The study's three-panel figure for one image."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(7.2, 2.9))
    _draw(axes, item)
    text, colour = _headline(item)
    fig.suptitle(text, fontsize=10, color=colour)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def save_grid(items: Sequence[Explained], path: Path, per_row: int = 2, dpi: int = 80, title: str = "") -> Path:
    """Many images on one page: ``per_row`` three-panel groups per row."""
    plt = _pyplot()
    per_row = max(1, min(per_row, len(items)))
    rows = max(1, -(-len(items) // per_row))
    fig, axes = plt.subplots(rows, 3 * per_row, figsize=(3 * per_row * 1.45, rows * 1.75 + 0.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, item in enumerate(items):
        group = axes[i // per_row, 3 * (i % per_row): 3 * (i % per_row) + 3]
        for ax in group:
            ax.axis("on")
        _draw(group, item, fontsize=6)
        text, colour = _headline(item, short=True)
        for ax in group:
            ax.set_title("")
        group[0].set_title(text, fontsize=6, color=colour, loc="left")
    if title:
        fig.suptitle(title, fontsize=9)
    height = rows * 1.75 + 0.3
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.2 / height, top=1 - (0.55 if title else 0.3) / height,
                        wspace=0.06, hspace=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def explained_items(result: GradCamResult, images: torch.Tensor, class_names: Sequence[str],
                    labels: Sequence[int | None] | None = None, titles: Sequence[str] | None = None) -> list[Explained]:
    """Pair each image with its normalised map and labels, ready for :func:`save_figure` / :func:`save_grid`."""
    unit = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    unit = unit.reshape(len(unit), *unit.shape[-2:]).cpu().numpy()
    cams = result.normalized().numpy()
    items = []
    for i in range(len(unit)):
        predicted = int(result.probs[i].argmax())
        label = None if labels is None else labels[i]
        items.append(Explained(
            image=unit[i], cam=cams[i], predicted=class_names[predicted],
            confidence=float(result.probs[i, predicted]),
            true=class_names[label] if label is not None else None,
            target=class_names[int(result.targets[i])], title=titles[i] if titles else "",
        ))
    return items


