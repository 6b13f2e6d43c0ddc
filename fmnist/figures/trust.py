"""Figures of the trust reports: corruption examples and accuracies, OOD score histograms and ROC curves.

Same conventions as :mod:`fmnist.figures.evaluation` (matplotlib on Agg, PNG at 120 dpi).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from fmnist.files import save_figure_atomic  # noqa: E402

OUT_COLORS = ("#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = save_figure_atomic(fig, path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def corruption_examples(clean: np.ndarray, examples: Mapping[str, np.ndarray], path: str | Path, *,
                        captions: Mapping[str, str] | None = None, title: str = "") -> Path:
    """One row per image: the clean image, then each corruption of it (caption: name, and e.g. severity)."""
    clean = np.asarray(clean)
    clean = clean[None] if clean.ndim == 2 else clean
    names = list(examples)
    rows, cols = len(clean), len(names) + 1
    fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols, 1.3 * rows + 0.4), squeeze=False)
    for r in range(rows):
        tiles = [("clean", clean[r])] + [(name, np.asarray(examples[name]).reshape(-1, 28, 28)[r]) for name in names]
        for c, (name, image) in enumerate(tiles):
            ax = axes[r, c]
            ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                caption = name.replace("_", " ")
                if captions and name in captions:
                    caption += f"\n{captions[name]}"
                ax.set_title(caption, fontsize=6)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def corruption_accuracy(accuracies: Mapping[str, Mapping[str, float]], path: str | Path, *,
                        clean: Mapping[str, float] | None = None, title: str = "") -> Path:
    """Grouped horizontal bars: accuracy per corruption (rows) for each model (colours); dashed = clean accuracy."""
    models = list(accuracies)
    names = list(next(iter(accuracies.values()))) if models else []
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) * max(1, len(models)) ** 0.5 + 1.2))
    height = 0.8 / max(1, len(models))
    y = np.arange(len(names))
    for k, model in enumerate(models):
        color = OUT_COLORS[k % len(OUT_COLORS)] if len(models) > 1 else "#1f77b4"
        ax.barh(y + k * height - 0.4 + height / 2, [accuracies[model][n] for n in names], height=height,
                color=color, label=model)
        if clean and model in clean:
            ax.axvline(clean[model], color=color, linestyle="--", linewidth=1)
    ax.set_yticks(y, [n.replace("_", " ") for n in names])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy (dashed: clean test set)")
    ax.axvline(0.1, color="black", linewidth=0.8, linestyle=":")
    if len(models) > 1:
        ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def severity_curves(by_severity: Mapping[str, Mapping[str, float | None]], path: str | Path, *,
                    clean: Mapping[str, float] | None = None, title: str = "") -> Path:
    """Accuracy over all corruptions against severity (0 = clean), one line per model."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for k, (model, accuracies) in enumerate(by_severity.items()):
        levels = sorted((int(s), a) for s, a in accuracies.items() if a is not None)
        if clean and model in clean:
            levels = [(0, clean[model]), *levels]
        ax.plot([s for s, _ in levels], [a for _, a in levels], marker="o", color=OUT_COLORS[k % len(OUT_COLORS)],
                label=model)
    ax.set_xlabel("severity (0 = clean)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.set_xticks(range(6))
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def ood_histograms(in_scores: Mapping[str, np.ndarray], out_scores: Mapping[str, Mapping[str, np.ndarray]],
                   path: str | Path, *, in_name: str = "in", auroc: Mapping[tuple[str, str], float] | None = None,
                   title: str = "") -> Path:
    """One panel per score: the in-distribution histogram against every out-set's (higher = more in)."""
    scores = list(in_scores)
    fig, axes = plt.subplots(1, len(scores), figsize=(3.6 * len(scores), 3.0), squeeze=False)
    for ax, score in zip(axes[0], scores, strict=True):
        values = [in_scores[score]] + [out_scores[o][score] for o in out_scores if score in out_scores[o]]
        finite = np.concatenate([v[np.isfinite(v)] for v in values])
        lo, hi = np.percentile(finite, [0.5, 99.5]) if len(finite) else (0.0, 1.0)
        bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 50)
        ax.hist(np.clip(in_scores[score], lo, hi), bins=bins, density=True, alpha=0.5, color="#1f77b4",
                label=in_name)
        for k, out in enumerate(out_scores):
            if score not in out_scores[out]:
                continue
            label = out if not auroc or (out, score) not in auroc else f"{out} (AUROC {auroc[(out, score)]:.3f})"
            ax.hist(np.clip(out_scores[out][score], lo, hi), bins=bins, density=True, histtype="step",
                    linewidth=1.5, color=OUT_COLORS[k % len(OUT_COLORS)], label=label)
        ax.set_title(score, fontsize=9)
        ax.set_yticks([])
        ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def roc_curves(in_scores: Mapping[str, np.ndarray], out_scores: Mapping[str, Mapping[str, np.ndarray]],
               path: str | Path, *, title: str = "", scores: Sequence[str] | None = None) -> Path:
    """ROC of in (positive) vs each out-set, one panel per out-set, one curve per score; TPR 95% marked."""
    outs = list(out_scores)
    fig, axes = plt.subplots(1, len(outs), figsize=(3.8 * len(outs), 3.4), squeeze=False)
    for ax, out in zip(axes[0], outs, strict=True):
        for k, score in enumerate(scores or list(in_scores)):
            if score not in out_scores[out]:
                continue
            y = np.r_[np.ones(len(in_scores[score])), np.zeros(len(out_scores[out][score]))]
            fpr, tpr, _ = roc_curve(y, np.r_[in_scores[score], out_scores[out][score]])
            ax.plot(fpr, tpr, color=OUT_COLORS[k % len(OUT_COLORS)], label=score, linewidth=1.2)
        ax.axhline(0.95, color="black", linestyle=":", linewidth=0.8)
        ax.plot([0, 1], [0, 1], "k--", linewidth=0.6)
        ax.set_xlabel("false positive rate (out called in)")
        if ax is axes[0, 0]:
            ax.set_ylabel("true positive rate (in kept)")
        ax.set_title(f"in vs {out}", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)
