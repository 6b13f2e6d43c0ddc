"""Every report figure is written as a real image (or a self-contained HTML page) from plain inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from fmnist.evaluation.metrics import calibration_bins
from fmnist.figures import evaluation as plots

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


def dark_blocks(path: Path, min_area: int = 1000) -> list[tuple[int, int, int, int]]:
    """(top, left, height, width) of each connected dark region of at least ``min_area`` pixels, in reading order.

    Caption glyphs are a few dozen pixels each; a tile of a white garment (drawn dark on white) is thousands.
    """
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L"))
    labels, count = ndimage.label(pixels < 40)
    areas = ndimage.sum(np.ones_like(pixels), labels, range(1, count + 1))
    boxes = [(s[0].start, s[1].start, s[0].stop - s[0].start, s[1].stop - s[1].start)
             for s, area in zip(ndimage.find_objects(labels), areas, strict=True) if area >= min_area]
    return sorted(boxes)


@pytest.mark.parametrize("n", [1, 10, 12])
def test_misclassified_grid_has_one_tile_per_error(tmp_path: Path, n: int) -> None:
    images = np.full((n, 28, 28), 255, dtype=np.uint8)  # solid garments: each tile is one dark square
    path = plots.misclassified_grid(images, [NAMES[k % 10] for k in range(n)], ["p"] * n, [0.5] * n,
                                    tmp_path / "mis.png", ncols=4)
    assert is_png(path)
    tiles = dark_blocks(path)
    assert len(tiles) == n
    rows = [sum(1 for t in tiles if t[0] == top) for top in sorted({t[0] for t in tiles})]
    assert rows == [min(4, n - 4 * r) for r in range(-(-n // 4))]  # 4 per row, the last row holds the rest
    assert len({(h, w) for _, _, h, w in tiles}) == 1  # every tile the same size


def test_misclassified_grid_draws_each_image_in_its_own_tile(tmp_path: Path) -> None:
    """A blank image leaves its tile white: exactly the non-blank ones show, in their places."""
    images = np.zeros((8, 28, 28), dtype=np.uint8)
    images[[0, 3, 5]] = 255
    path = plots.misclassified_grid(images, ["t"] * 8, ["p"] * 8, [0.9] * 8, tmp_path / "mis.png", ncols=4)
    tiles = dark_blocks(path)
    lefts, tops = sorted({t[1] for t in tiles}), sorted({t[0] for t in tiles})
    assert len(tiles) == 3 and len(tops) == 2  # row 0: tiles 0 and 3; row 1: tile 5 (column 1)
    first_row = [t for t in tiles if t[0] == tops[0]]
    assert len(first_row) == 2 and [t for t in tiles if t[0] == tops[1]][0][1] > first_row[0][1]
    assert [t[1] for t in first_row] == [lefts[0], lefts[-1]]


def test_comparison_chart_and_page(tmp_path: Path) -> None:
    rows = [{"name": "deep", "kind": "cnn", "accuracy": 0.917, "published": 0.913},
            {"name": "svm", "kind": "baseline", "accuracy": 0.898, "published": 0.87, "benchmark": 0.897}]
    assert is_png(plots.comparison_bar(rows, tmp_path / "cmp.png"))
    page = plots.comparison_html(rows, tmp_path / "cmp.html").read_text()
    assert "deep" in page and "svm" in page and "<html" in page.lower()
