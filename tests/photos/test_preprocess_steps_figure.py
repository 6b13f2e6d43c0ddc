"""The steps figure (photo -> segmentation -> 28x28 -> prediction) and its bounded sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fmnist.figures.photos import StepsSample, pick_rows, save_steps_figure
from fmnist.photos.preprocess import Preprocessed, preprocess


def one_hot(k: int, n: int = 10) -> np.ndarray:
    p = np.full(n, 0.01)
    p[k] = 1.0 - 0.01 * (n - 1)
    return p


def test_pick_rows_takes_classes_in_turn() -> None:
    labels = [0] * 10 + [1] * 3 + [2] * 3
    predicted = [0] * 8 + [6, 6] + [1, 1, 0] + [2, 3, 3]
    rows = pick_rows(labels, predicted, per_kind=4)
    right, wrong = rows[:4], rows[4:]
    assert sorted({labels[i] for i in right}) == [0, 1, 2]  # not four T-shirts
    assert all(labels[i] == predicted[i] for i in right) and all(labels[i] != predicted[i] for i in wrong)
    assert sorted({labels[i] for i in wrong}) == [0, 1, 2] and len(wrong) == 4
    assert pick_rows([None, None, None], [1, 2, 3], per_kind=1) == [0, 1]


def test_steps_sample_keeps_a_bounded_sample_and_frees_the_rest() -> None:
    sample = StepsSample(per_kind=2, per_class=1)
    items = []
    for i in range(6):
        item = Preprocessed(np.zeros((28, 28), np.uint8), work=np.zeros((20, 15, 3), np.uint8),
                            mask=np.ones((20, 15), bool))
        items.append(item)
        sample.offer(item, one_hot(0 if i < 3 else 4), label=0, name=f"p{i}.jpg")
    kept = [item.work is not None for item in items]
    assert kept == [True, False, False, True, False, False]  # one right and one wrong T-shirt
    assert all(item.mask is None for item, k in zip(items, kept, strict=True) if not k)


def test_steps_figure_is_written(tmp_path: Path) -> None:
    photo = Image.new("RGB", (90, 120), (200, 190, 170))
    photo.paste((30, 40, 120), (25, 20, 65, 100))
    item = preprocess(photo, "fashion")
    assert item.work is not None and item.mask is not None and item.mask.any()
    path = save_steps_figure([item, item], np.stack([one_hot(1), one_hot(3)]), [1, 1],
                             [str(k) for k in range(10)], tmp_path / "steps.png", names=["a.jpg", "b.jpg"])
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 300
    assert StepsSample().save([str(k) for k in range(10)], tmp_path / "none.png") is None
