"""Figures: matplotlib PNGs for reports, plotly HTML where interaction helps (the comparison chart).

Matplotlib runs on the non-interactive Agg backend (no display on servers or in tests). The
plotly HTML embeds plotly.js (``include_plotlyjs="inline"``), so it opens offline.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fmnist.files import save_figure_atomic, write_text_atomic  # noqa: E402

KIND_COLORS = {"cnn": "#1f77b4", "baseline": "#ff7f0e", "other": "#7f7f7f"}


def _save(fig: Any, path: str | Path) -> Path:
    path = save_figure_atomic(fig, path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def confusion_heatmap(cm: np.ndarray, class_names: Sequence[str], path: str | Path, *, title: str = "",
                      col_names: Sequence[str] | None = None) -> Path:
    """Counts in every cell; colour = share of the true class (row-normalised), so rows compare at a glance."""
    cm = np.asarray(cm)
    col_names = col_names or class_names
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    size = max(5.0, 0.6 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ax.set_xticks(range(len(col_names)), col_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j]:
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.5 else "black")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def misclassified_grid(images: np.ndarray, true_names: Sequence[str], pred_names: Sequence[str],
                       confidences: Sequence[float], path: str | Path, *, title: str = "", ncols: int = 8,
                       indices: Sequence[int] | None = None) -> Path:
    """Image grid, each tile captioned ``#index / T: true / P: predicted (confidence)``.

    Drawn as one mosaic image with text captions, not one subplot per tile: ten times faster
    to render, which matters when every fold or run writes a report.
    """
    images = np.asarray(images)
    if images.ndim == 4:
        images = images[:, 0] if images.shape[1] in (1, 3) else images[..., 0]
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = max(1, int(np.ceil(n / ncols)))
    h, w = images.shape[1:3] if n else (28, 28)
    pad_x, pad_y = 4, 16  # pixels between tiles; caption space above each tile
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    mosaic = np.ones((nrows * (h + pad_y), ncols * (w + pad_x)), dtype=np.float32)
    for k in range(n):
        r, c = divmod(k, ncols)
        tile = images[k].astype(np.float32) / scale
        top, left = r * (h + pad_y) + pad_y, c * (w + pad_x)
        mosaic[top:top + h, left:left + w] = 1.0 - tile  # dark garment on white, like a printed catalogue
    fig, ax = plt.subplots(figsize=(1.25 * ncols, 1.45 * nrows + 0.4))
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    for k in range(n):
        r, c = divmod(k, ncols)
        caption = f"T: {true_names[k]}\nP: {pred_names[k]} ({confidences[k]:.2f})"
        if indices is not None:
            caption = f"#{indices[k]}  " + caption
        ax.text(c * (w + pad_x) + w / 2, r * (h + pad_y) + pad_y - 1, caption, ha="center", va="bottom",
                fontsize=4.5, linespacing=1.1)
    ax.set_title(title, fontsize=8)
    path = save_figure_atomic(fig, path, dpi=150, bbox_inches="tight", pad_inches=0.05)
    plt.close(fig)
    return path


def reliability_diagram(bins: list[dict[str, Any]], ece: float, path: str | Path, *, title: str = "") -> Path:
    """Accuracy vs mean confidence per bin, against the diagonal of perfect calibration; sample counts below."""
    fig, (ax, ax_count) = plt.subplots(2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    width = bins[0]["hi"] - bins[0]["lo"] if bins else 0.1
    filled = [b for b in bins if b["count"]]  # empty bins have no accuracy: draw nothing there
    centers = [(b["lo"] + b["hi"]) / 2 for b in filled]
    accuracy = np.array([b["accuracy"] for b in filled])
    confidence = np.array([b["confidence"] for b in filled])
    ax.bar(centers, accuracy, width=width * 0.95, color="#1f77b4", edgecolor="black", label="accuracy")
    ax.bar(centers, confidence - accuracy, bottom=accuracy, width=width * 0.95, color="#d62728", alpha=0.3,
           label="gap to mean confidence")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"{title}\nECE = {ece:.4f}", fontsize=9)
    ax_count.bar(centers, [b["count"] for b in filled], width=width * 0.95, color="#7f7f7f")
    ax_count.set_yscale("symlog")
    ax_count.set_xlabel("confidence (top probability)")
    ax_count.set_ylabel("samples")
    ax_count.set_xlim(0, 1)
    return _save(fig, path)


def comparison_bar(rows: list[dict[str, Any]], path: str | Path, *, title: str = "Results at a glance") -> Path:
    """Study A's "Results at a glance": test accuracy per model, CNNs and baselines coloured apart,
    the published number of the same model as a black tick."""
    names = [r["name"] for r in rows]
    acc = [100 * (r["accuracy"] or 0.0) for r in rows]
    colors = [KIND_COLORS.get(r.get("kind") or "other", KIND_COLORS["other"]) for r in rows]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(rows) + 2), 4.5))
    bars = ax.bar(range(len(rows)), acc, color=colors)
    for bar, value in zip(bars, acc, strict=True):
        ax.text(bar.get_x() + bar.get_width() / 2, value + 0.3, f"{value:.1f}", ha="center", va="bottom", fontsize=8)
    published = [(i, 100 * r["published"]) for i, r in enumerate(rows) if r.get("published") is not None]
    if published:
        ax.scatter([i for i, _ in published], [v for _, v in published], marker="_", s=600, color="black",
                   linewidths=2, zorder=3, label="published (studies A/B)")
    from matplotlib.patches import Patch

    handles = [Patch(color=KIND_COLORS[k], label=k) for k in ("cnn", "baseline") if any(r.get("kind") == k
                                                                                        for r in rows)]
    ax.legend(handles=handles + ax.get_legend_handles_labels()[0], loc="best", fontsize=8)
    low = min(acc + [v for _, v in published]) if rows else 0
    ax.set_ylim(max(0.0, low - 10), 103)
    ax.set_xticks(range(len(rows)), names, rotation=30, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    return _save(fig, path)


def comparison_html(rows: list[dict[str, Any]], path: str | Path, *, title: str = "Results at a glance") -> Path:
    """The same chart as :func:`comparison_bar`, interactive (hover shows macro-F1, params, seconds)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for kind in ("cnn", "baseline", "other"):
        subset = [r for r in rows if (r.get("kind") or "other") == kind]
        if not subset:
            continue
        fig.add_trace(go.Bar(
            x=[r["name"] for r in subset], y=[100 * (r["accuracy"] or 0.0) for r in subset], name=kind,
            marker_color=KIND_COLORS[kind],
            text=[f"{100 * (r['accuracy'] or 0.0):.1f}" for r in subset], textposition="outside",
            customdata=[[_fmt(r.get("macro_f1")), _fmt(r.get("params"), "{:,}"), _fmt(r.get("train_seconds"), "{:.0f}")]
                        for r in subset],
            hovertemplate="%{x}<br>accuracy %{y:.2f}%<br>macro-F1 %{customdata[0]}<br>params %{customdata[1]}"
                          "<br>train s %{customdata[2]}<extra></extra>",
        ))
    published = [r for r in rows if r.get("published") is not None]
    if published:
        fig.add_trace(go.Scatter(x=[r["name"] for r in published], y=[100 * r["published"] for r in published],
                                 mode="markers", name="published (studies A/B)",
                                 marker={"symbol": "line-ew-open", "size": 28, "color": "black",
                                         "line": {"width": 3}}))
    accs = [100 * (r["accuracy"] or 0.0) for r in rows] + [100 * r["published"] for r in published]
    fig.update_layout(title=title, yaxis_title="accuracy (%)", barmode="group",
                      yaxis_range=[max(0.0, min(accs, default=0) - 10), 103], template="plotly_white",
                      xaxis={"categoryorder": "array", "categoryarray": [r["name"] for r in rows]})
    return write_text_atomic(path, fig.to_html(include_plotlyjs="inline", full_html=True))


def _fmt(value: Any, pattern: str = "{:.4f}") -> str:
    return "n/a" if value is None else pattern.format(value)
