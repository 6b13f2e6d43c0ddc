"""Every report figure is written as a real image (or a self-contained HTML page) from plain inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fmnist.evaluation import plots
from fmnist.evaluation.metrics import calibration_bins

NAMES = tuple(f"class {k}" for k in range(10))


def is_png(path: Path, min_side: int = 100) -> bool:
    with Image.open(path) as image:
        return image.format == "PNG" and min(image.size) >= min_side


def test_confusion_and_reliability_figures(tmp_path: Path) -> None:
    cm = np.diag(np.full(10, 90)) + 1
    assert is_png(plots.confusion_heatmap(cm, NAMES, tmp_path / "cm.png", title="t"))
    probs = np.random.default_rng(0).dirichlet(np.ones(10), size=200)
    bins = calibration_bins(probs, np.random.default_rng(1).integers(0, 10, 200))
    assert is_png(plots.reliability_diagram(bins, 0.05, tmp_path / "rel.png"))


def test_misclassified_grid_has_one_tile_per_error(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 255, size=(12, 28, 28), dtype=np.uint8)
    path = plots.misclassified_grid(images, [NAMES[k % 10] for k in range(12)], ["p"] * 12, [0.5] * 12,
                                    tmp_path / "mis.png", ncols=4)
    assert is_png(path)


def test_comparison_chart_and_page(tmp_path: Path) -> None:
    rows = [{"name": "deep", "kind": "cnn", "accuracy": 0.917, "published": 0.913},
            {"name": "svm", "kind": "baseline", "accuracy": 0.898, "published": 0.87, "benchmark": 0.897}]
    assert is_png(plots.comparison_bar(rows, tmp_path / "cmp.png"))
    page = plots.comparison_html(rows, tmp_path / "cmp.html").read_text()
    assert "deep" in page and "svm" in page and "<html" in page.lower()
