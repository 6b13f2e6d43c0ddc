"""Figures of explanations: the study's three panels per image, grids, per-class mean maps, and the checks' plots.

A blank map (no positive value anywhere) is drawn as a grey panel saying "blank map", never as
the colour map's lowest colour: a uniformly blue square would look like an answer ("nothing
matters equally") when the method gave none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmnist.files import save_figure_atomic
from fmnist.interpret.gradcam import GradCamResult
from fmnist.interpret.methods import METHODS

BLANK_TEXT = "blank map\n(all zero)"
BLANK_FACE = 0.82  # grey level of a blank panel
OVERLAY_FLOOR = 0.02  # normalised values below this leave the image uncoloured in overlays

# ----------------------------------------------------------------------------- per-image panels


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
    method: str = "Grad-CAM"  # the method's title, for the heatmap panel

    @property
    def blank(self) -> bool:
        return not bool(np.nanmax(self.cam) > 0) if self.cam.size else True


def _headline(item: Explained, short: bool = False) -> tuple[str, str]:
    """Title text and colour (green correct, red wrong, black unlabelled)."""
    first = " ".join(p for p in (item.title, f"true: {item.true}" if item.true is not None else "") if p)
    second = f"pred: {item.predicted} ({item.confidence:.0%})"
    if item.target is not None and item.target != item.predicted:
        second += f", map for {item.target}"
    text = "\n".join(p for p in (first, second) if p) if short else "   ".join(p for p in (first, second) if p)
    colour = "black" if item.true is None else ("tab:green" if item.true == item.predicted else "tab:red")
    return text, colour


def draw_blank(ax: Any, shape: tuple[int, int], fontsize: float = 9) -> None:
    """A grey panel with the words "blank map": the method returned nothing to show for this image."""
    ax.imshow(np.full(shape, BLANK_FACE), cmap="gray", vmin=0, vmax=1)
    ax.text(shape[1] / 2 - 0.5, shape[0] / 2 - 0.5, BLANK_TEXT, ha="center", va="center", color="tab:red",
            fontsize=fontsize, fontweight="bold")


def draw_overlay(ax: Any, image: np.ndarray, cam: np.ndarray | None, alpha: float = 0.5) -> None:
    """The image in grey with the map's non-negligible values on top (a blank map leaves the image as is)."""
    ax.imshow(image, cmap="gray", vmin=0, vmax=1)
    if cam is not None and np.nanmax(cam) > 0:
        ax.imshow(np.ma.masked_where(~(cam >= OVERLAY_FLOOR), cam), cmap="jet", vmin=0, vmax=1, alpha=alpha)


def _draw(axes: Sequence, item: Explained, fontsize: float = 9) -> None:
    axes[0].imshow(item.image, cmap="gray", vmin=0, vmax=1)
    if item.blank:
        draw_blank(axes[1], item.image.shape, fontsize=fontsize * 0.8)
        draw_overlay(axes[2], item.image, None)
    else:
        axes[1].imshow(item.cam, cmap="jet", vmin=0, vmax=1)
        draw_overlay(axes[2], item.image, item.cam)
    for ax, name in zip(axes, ("original", item.method, "overlay"), strict=True):
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(name, fontsize=fontsize)


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path, dpi: int) -> Path:
    plt = pyplot()
    save_figure_atomic(fig, path, dpi=dpi)
    plt.close(fig)
    return path


def save_figure(item: Explained, path: Path, dpi: int = 100) -> Path:
    """The study's three-panel figure for one image."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(7.2, 2.9))
    _draw(axes, item)
    text, colour = _headline(item)
    fig.suptitle(text, fontsize=10, color=colour)
    fig.tight_layout()
    return _save(fig, path, dpi)


def grid_figure(items: Sequence[Explained], per_row: int = 2, title: str = "") -> Any:
    """Many images on one matplotlib figure: ``per_row`` three-panel groups per row (for files and TensorBoard)."""
    plt = pyplot()
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
    return fig


def save_grid(items: Sequence[Explained], path: Path, per_row: int = 2, dpi: int = 80, title: str = "") -> Path:
    """:func:`grid_figure` written to ``path``."""
    return _save(grid_figure(items, per_row, title), path, dpi)


def explained_items(result: GradCamResult, images: torch.Tensor, class_names: Sequence[str],
                    labels: Sequence[int | None] | None = None, titles: Sequence[str] | None = None) -> list[Explained]:
    """Pair each image with its normalised map and labels, ready for :func:`save_figure` / :func:`save_grid`."""
    unit = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    unit = unit.reshape(len(unit), *unit.shape[-2:]).cpu().numpy()
    cams = result.normalized().numpy()
    method = METHODS[result.method].title if result.method in METHODS else result.method
    items = []
    for i in range(len(unit)):
        predicted = int(result.probs[i].argmax())
        label = None if labels is None else labels[i]
        items.append(Explained(
            image=unit[i], cam=cams[i], predicted=class_names[predicted],
            confidence=float(result.probs[i, predicted]),
            true=class_names[label] if label is not None else None,
            target=class_names[int(result.targets[i])], title=titles[i] if titles else "", method=method,
        ))
    return items


# ----------------------------------------------------------------------------- the checks' figures


def save_class_means(means: Mapping[str, torch.Tensor], class_names: Sequence[str], path: Path, title: str = "",
                     dpi: int = 90) -> Path:
    """Per class (columns), right and wrong (rows): the mean map over the class's mean image.

    ``means`` is :func:`fmnist.interpret.measures.class_means`' result. A group without images
    says "none"; one whose maps were all blank is drawn as blank.
    """
    plt = pyplot()
    num_classes = len(class_names)
    fig, axes = plt.subplots(2, num_classes, figsize=(1.25 * num_classes, 3.2), squeeze=False)
    for cls in range(num_classes):
        for outcome, word in ((0, "right"), (1, "wrong")):
            ax = axes[outcome, cls]
            ax.set_xticks([])
            ax.set_yticks([])
            count, blank = int(means["counts"][cls, outcome]), int(means["blank"][cls, outcome])
            image = means["images"][cls, outcome].numpy()
            mean_map = means["maps"][cls, outcome].numpy()
            if count == 0:
                ax.imshow(np.ones_like(image), cmap="gray", vmin=0, vmax=1)
                ax.text(image.shape[1] / 2, image.shape[0] / 2, "none", ha="center", va="center", fontsize=7)
            elif np.isnan(mean_map).all():
                draw_blank(ax, image.shape, fontsize=6)
            else:
                draw_overlay(ax, image, mean_map / max(float(np.nanmax(mean_map)), 1e-12), alpha=0.55)
            label = f"{word} n={count}" + (f"\n{blank} blank" if blank else "")
            ax.set_xlabel(label, fontsize=6, color="tab:red" if blank else "black")
            if outcome == 0:
                ax.set_title(class_names[cls], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path, dpi)


def save_curves(faithfulness: Mapping[str, Mapping[str, Any]], path: Path, title: str = "", dpi: int = 90) -> Path:
    """Deletion and insertion accuracy curves of each method beside the random and garment-first orders."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, mode in zip(axes, ("deletion", "insertion"), strict=True):
        first = next(iter(faithfulness.values()))
        fractions = first["fractions"]
        for name, style in (("random", ":"), ("garment", "--")):
            curve = first[mode][name]
            ax.plot(fractions, curve["accuracy"], style, color="grey",
                    label=f"{name} order (AUC {curve['auc_accuracy']:.3f})")
        for method, result in faithfulness.items():
            curve = result[mode]["map"]
            title_ = METHODS[method].title if method in METHODS else method
            ax.plot(fractions, curve["accuracy"], label=f"{title_} (AUC {curve['auc_accuracy']:.3f}, "
                                                         f"x{result[mode]['ratio_random']:.2f} random)")
        ax.set_xlabel(f"fraction of pixels {'removed' if mode == 'deletion' else 'revealed'}")
        ax.set_ylabel("accuracy")
        ax.set_title(mode, fontsize=9)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path, dpi)


def save_randomisation(steps: Mapping[str, Sequence[Mapping[str, Any]]], path: Path, title: str = "",
                       threshold: float | None = None, dpi: int = 90) -> Path:
    """Mean Spearman correlation with the trained maps after each cascading re-initialisation step."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.4))
    labels: list[str] = []
    for method, rows in steps.items():
        labels = [str(r["layer"]) for r in rows]
        values = [np.nan if r["spearman_mean"] is None else r["spearman_mean"] for r in rows]
        ax.plot(range(len(rows)), values, marker="o", label=METHODS[method].title if method in METHODS else method)
    if threshold is not None:
        ax.axhline(threshold, color="grey", linestyle=":", label=f"pass threshold {threshold}")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=6)
    ax.set_xlabel("layers re-initialised so far (output first)", fontsize=8)
    ax.set_ylabel("Spearman rank correlation", fontsize=8)
    ax.set_ylim(-0.2, 1.02)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path, dpi)


def save_randomisation_examples(examples: torch.Tensor, images: torch.Tensor, layers: Sequence[str], path: Path,
                                title: str = "", dpi: int = 80) -> Path:
    """Adebayo et al.'s figure: each example image's map (rows) after each cascading step (columns)."""
    plt = pyplot()
    steps, count = examples.shape[:2]
    unit = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    unit = unit.reshape(len(unit), *unit.shape[-2:])[:count].numpy()
    fig, axes = plt.subplots(count, steps + 1, figsize=(1.1 * (steps + 1), 1.2 * count + 0.6), squeeze=False)
    for row in range(count):
        axes[row, 0].imshow(unit[row], cmap="gray", vmin=0, vmax=1)
        for step in range(steps):
            cam = examples[step, row].numpy()
            ax = axes[row, step + 1]
            if not np.nanmax(cam) > 0:
                draw_blank(ax, cam.shape, fontsize=4)
            else:
                ax.imshow(cam / np.nanmax(cam), cmap="jet", vmin=0, vmax=1)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_title("input", fontsize=6)
    for step, layer in enumerate(layers):
        axes[0, step + 1].set_title(layer if step else "trained", fontsize=5, rotation=30)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return _save(fig, path, dpi)
