"""The product's promise, on the real data, in the default suite: a change that costs accuracy fails here.

One short training: the speedrun recipe (``configs/speedrun.yaml``, 3 epochs, seed 42, about 20 s on a quiet
2-core CPU) on the real Fashion-MNIST must reach 91% test accuracy, and every class its own floor; the
checkpoint it keeps must score the same when the evaluator loads it afresh; and, with the same checkpoint and
the shipped ``fashion`` preprocessing, the 215 real photos of the development set must score their floor.

Floors are set from measurements with margin (docs/testing.md has them). A user's machine without the data
skips with the reason; on CI (``CI=true``) missing data is a failure (tests/conftest.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import real_photos_dir

from fmnist.commands.shims import evaluate_py as evaluate_main
from fmnist.evaluation.predict import evaluate
from fmnist.training import fit
from fmnist.training.api import Run

SEED = 42
TEST_ACCURACY = 0.91  # the recipe's documented target (docs/speedrun.md: 91.47 ± 0.08% over seeds 42-46)
# Per class: the lower of seeds 42 and 43 (measured 2026-12-07, docs/testing.md) less 3 points, rounded down.
CLASS_FLOORS = {
    "T-shirt/top": 0.84, "Trouser": 0.94, "Pullover": 0.85, "Dress": 0.87, "Coat": 0.83, "Sandal": 0.94,
    "Shirt": 0.69, "Sneaker": 0.93, "Bag": 0.95, "Ankle boot": 0.93,
}
PHOTO_ACCURACY = 0.55  # speedrun measured 61.9% (seed 42) on the 215 photos; a broken preprocessing gives 4-39%
# Zalando's label table (github.com/zalandoresearch/fashion-mnist), in label order
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")


@pytest.fixture(scope="module")
def speedrun(real_fashion_root: str, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """``python train.py --model speedrun --seed 42`` on the real data, as a user runs it (no settings changed)."""
    return fit("speedrun", seed=SEED, logdir=tmp_path_factory.mktemp("gate"), overrides={
        "data.data_dir": real_fashion_root, "trainer.enable_progress_bar": False,
        "trainer.enable_model_summary": False})


def test_speedrun_reaches_91_percent_and_every_class_its_floor(speedrun: Run, real_fashion_root: str) -> None:
    metrics = speedrun.metrics
    assert metrics["epochs"] == 3 and metrics["n_train"] == 51_000 and metrics["seed"] == SEED
    assert metrics["test_acc"] >= TEST_ACCURACY, metrics["test_acc"]
    # The same numbers from the checkpoint, scored afresh by the evaluator on the 10,000 test images, per class
    # by hand: a run that logs a better number than its checkpoint earns fails here too.
    predictions = evaluate(speedrun, "fashion", "test", data_dir=real_fashion_root)
    predicted, labels = predictions.probs.argmax(axis=1), predictions.labels
    assert len(labels) == 10_000 and np.bincount(labels).tolist() == [1000] * 10
    assert float((predicted == labels).mean()) == pytest.approx(metrics["test_acc"], abs=1e-6)
    recall = {name: float((predicted[labels == k] == k).mean()) for k, name in enumerate(FASHION_CLASSES)}
    assert recall == pytest.approx(metrics["per_class_acc"], abs=1e-6)
    below = {name: (round(recall[name], 4), floor) for name, floor in CLASS_FLOORS.items() if recall[name] < floor}
    assert not below, f"classes below their floor (accuracy, floor): {below}"


def test_speedrun_on_the_real_photos_reaches_its_floor(speedrun: Run, tmp_path: Path) -> None:
    """The shipped photo pipeline (GrabCut, Fashion-MNIST's framing) end to end, on the 215 development photos."""
    photos = real_photos_dir()
    out = tmp_path / "photos"
    assert evaluate_main(["predict", str(speedrun.dir), str(photos), "--out", str(out)]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["n"] == 215 and summary["preprocess"] == "fashion"
    rows = (out / "predictions.csv").read_text().splitlines()[1:]
    right = sum(row.split(",")[2] == row.split(",")[3] for row in rows)  # label, top-1
    assert len(rows) == 215 and summary["accuracy"] == right / 215
    assert summary["accuracy"] >= PHOTO_ACCURACY, summary["accuracy"]
