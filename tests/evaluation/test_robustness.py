"""Corruption accuracy: the numbers by hand (mean, by severity, CE and mCE), the reference checks, the command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_synthetic_dataset

from fmnist.commands.shims import evaluate_py as evaluate_main
from fmnist.data.sources import FASHION_CLASSES
from fmnist.errors import FmnistError
from fmnist.evaluation import robustness as R
from fmnist.predictions import Predictions


def _pred(correct: np.ndarray, split: str = "test") -> Predictions:
    """Predictions that are right exactly where ``correct`` is True (confidence 0.9)."""
    n = len(correct)
    labels = np.arange(n) % 10
    preds = np.where(correct, labels, (labels + 1) % 10)
    probs = np.full((n, 10), 0.1 / 9, dtype=np.float32)
    probs[np.arange(n), preds] = 0.9
    return Predictions(probs=probs, labels=labels, indices=np.arange(n), dataset="fashion", model="hand",
                       class_names=FASHION_CLASSES, split=split, meta={"run": "hand_v0", "kind": "cnn"})


def _set(clean_acc: float, accs: dict[str, float], n: int = 100) -> R.CorruptedSetPredictions:
    """Every image's severity is 1 + (i mod 5); the first ``acc * n`` images are right."""
    severities = (np.arange(n) % 5 + 1).astype(np.uint8)
    corrupted = {c: _pred(np.arange(n) < round(a * n), c) for c, a in accs.items()}
    return R.CorruptedSetPredictions("fashion-c", {"name": "fashion-c", "seed": 0}, _pred(np.arange(n) < round(clean_acc * n)),
                                     corrupted, dict.fromkeys(accs, severities), Path("."))


def test_summary_numbers_by_hand() -> None:
    model = _set(0.9, {"rotate": 0.6, "inverse": 0.2})
    reference = R.reference_errors(R.robustness_summary(_set(0.8, {"rotate": 0.5, "inverse": 0.4}), name="ref"))
    assert reference == {"name": "ref", "clean_error": pytest.approx(0.2), "set": {"name": "fashion-c", "seed": 0},
                         "mean_accuracy": pytest.approx(0.45),
                         "errors": {"rotate": pytest.approx(0.5), "inverse": pytest.approx(0.6)}}
    s = R.robustness_summary(model, reference)
    assert s["name"] == "hand_v0" and s["clean"]["accuracy"] == pytest.approx(0.9)
    assert s["mean_accuracy"] == pytest.approx(0.4) and s["accuracy_drop"] == pytest.approx(0.5)
    assert s["worst"] == "inverse"
    rotate, inverse = s["corruptions"]
    assert rotate["ce"] == pytest.approx(0.4 / 0.5) and inverse["ce"] == pytest.approx(0.8 / 0.6)
    assert s["mce"] == pytest.approx((0.8 + 0.8 / 0.6) / 2)
    assert rotate["relative_ce"] == pytest.approx((0.4 - 0.1) / (0.5 - 0.2))
    assert s["relative_mce"] == pytest.approx(((0.3 / 0.3) + (0.7 / 0.4)) / 2)
    # images 0..59 right for rotate; severity s holds images i with i % 5 == s - 1: 12 of 20 right each
    assert rotate["accuracy_by_severity"] == {str(k): pytest.approx(0.6) for k in range(1, 6)}
    assert s["accuracy_by_severity"]["3"] == pytest.approx(12 / 20)  # rotate only: inverse ignores its severity
    assert inverse["accuracy_by_severity"]["3"] == pytest.approx(4 / 20)
    assert rotate["ece"] == pytest.approx(abs(0.9 - 0.6))
    assert "mce" not in R.robustness_summary(model)


def test_reference_from_another_set_is_refused() -> None:
    reference = R.reference_errors(R.robustness_summary(_set(0.8, {"rotate": 0.5}), name="ref"))
    other = _set(0.9, {"rotate": 0.6})
    other.set_id = {"name": "fashion-c", "seed": 1}
    with pytest.raises(FmnistError, match="measured on another corrupted set"):
        R.robustness_summary(other, reference)
    with pytest.raises(FmnistError, match="has no result for inverse"):
        R.robustness_summary(_set(0.9, {"rotate": 0.6, "inverse": 0.1}), reference)


def test_markdown_table_lists_every_model() -> None:
    a = R.robustness_summary(_set(0.9, {"rotate": 0.6}), name="a")
    b = R.robustness_summary(_set(0.8, {"rotate": 0.5}), name="b")
    table = R.to_markdown([a, b])
    assert "| corruption | a | b |" in table and "| rotate | 60.00% | 50.00% |" in table
    assert "| **mean** | **60.00%** | **50.00%** |" in table


@pytest.fixture(scope="module")
def own_data(tmp_path_factory) -> str:
    """A synthetic data root of this module's own: the corrupted set is written under it."""
    root = tmp_path_factory.mktemp("robust-data")
    write_synthetic_dataset(root, "fashion", seed=0)
    return str(root)


def test_fashion_c_command_on_a_checkpoint(cnn_checkpoint: Path, own_data: str, tmp_path: Path) -> None:
    out = tmp_path / "rob"
    code = evaluate_main([str(cnn_checkpoint), "--dataset", "fashion-c", "--data-dir", own_data, "--reference",
                          "none", "--corruptions", "rotate", "inverse", "flip_ud", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "robustness.json").read_text())
    assert [r["corruption"] for r in report["corruptions"]] == ["rotate", "inverse", "flip_ud"]
    assert report["mean_accuracy"] == pytest.approx(np.mean([r["accuracy"] for r in report["corruptions"]]))
    assert report["n"] == 100 and report["set"]["seed"] == 0 and "mce" not in report
    assert (Path(own_data) / "FashionMNIST-C" / "seed0-random" / "manifest.json").is_file()
    for name in ("robustness.csv", "robustness.md", "corruption_accuracy.png", "corruption_examples.png",
                 "corruption_severity.png"):
        assert (out / name).stat().st_size > 0

    # the model against itself as the reference: every CE is exactly 1
    again = tmp_path / "rob-self"
    assert evaluate_main([str(cnn_checkpoint), "--dataset", "fashion-c", "--data-dir", own_data, "--reference",
                          str(out), "--corruptions", "rotate", "inverse", "flip_ud", "--out", str(again),
                          "--no-plots"]) == 0
    report = json.loads((again / "robustness.json").read_text())
    assert report["mce"] == pytest.approx(1.0) and report["reference"]["name"] == "cnn_cnn"


def test_fashion_c_command_on_a_baseline_with_a_reference(cnn_checkpoint: Path, own_data: str,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "rob-logreg"
    code = evaluate_main(["--baseline", "logreg", "--n-jobs", "1", "--artifacts", str(tmp_path / "artifacts"),
                          "--dataset", "fashion-c", "--data-dir", own_data, "--reference", str(cnn_checkpoint),
                          "--corruptions", "shot_noise", "scale", "--out", str(out), "--no-plots"])
    assert code == 0
    report = json.loads((out / "robustness.json").read_text())
    assert report["name"] == "logreg" and report["reference"]["name"] == "cnn_cnn"
    assert [m["name"] for m in report["models"]] == ["cnn_cnn"]
    assert report["models"][0]["mce"] == pytest.approx(1.0)
    assert report["mce"] is not None and report["mce"] > 0


def test_fashion_c_needs_the_test_split(cnn_checkpoint: Path, own_data: str, capsys) -> None:
    assert evaluate_main([str(cnn_checkpoint), "--dataset", "fashion-c", "--split", "val", "--data-dir",
                          own_data]) == 2
    assert "corrupts the test set only" in capsys.readouterr().err
