"""Common evaluator: numbers against scikit-learn, report files, the deep checkpoint path, errors."""

from __future__ import annotations

import csv
import functools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from fmnist.commands import call
from fmnist.data.sources import FASHION_CLASSES
from fmnist.errors import FmnistError
from fmnist.evaluation.metrics import (
    averages,
    calibration_bins,
    compute_metrics,
    expected_calibration_error,
    most_confused,
    per_class_scores,
    top_k_accuracy,
)
from fmnist.evaluation.report import write_report
from fmnist.predictions import Predictions
from fmnist.runs import newest_trained as latest_version

cli_main = functools.partial(call, "evaluate")  # the verb, errors raised (not printed)


ROOT = Path(__file__).resolve().parents[2]
REPORT_FILES = {"metrics.json", "classification_report.txt", "per_class.csv", "confusion_matrix.csv",
                "confusion_matrix.png", "confused_pairs.csv", "misclassified.csv", "misclassified.png",
                "low_confidence.csv", "reliability.png", "predictions.npz"}


def hand_made(n: int = 400, seed: int = 0, with_images: bool = True) -> Predictions:
    """Random but structured predictions: mostly right, class 9 never predicted (zero-division case)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n)
    logits = rng.normal(size=(n, 10)) + 2.5 * np.eye(10)[labels]
    logits[:, 9] -= 10.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8) if with_images else None
    return Predictions(probs=probs, labels=labels, indices=np.arange(n) * 3, dataset="fashion", model="hand",
                       class_names=FASHION_CLASSES, split="test", images=images)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


# -- numbers -------------------------------------------------------------------------------------------
def test_metrics_match_sklearn() -> None:
    pred = hand_made()
    y, p = pred.labels, pred.preds
    assert 0 not in np.bincount(y, minlength=10) and 9 not in set(p)  # a class with no predictions
    m = compute_metrics(pred, top_k=(2, 3, 5))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    precision, recall, f1, support = skm.precision_recall_fscore_support(y, p, labels=range(10), zero_division=0)
    rows = m["per_class"]
    assert [r["precision"] for r in rows] == pytest.approx(precision)
    assert [r["recall"] for r in rows] == pytest.approx(recall)
    assert [r["f1"] for r in rows] == pytest.approx(f1)
    assert [r["support"] for r in rows] == support.tolist()
    for average in ("macro", "weighted"):
        expected = skm.precision_recall_fscore_support(y, p, labels=range(10), average=average, zero_division=0)
        assert [m[average][k] for k in ("precision", "recall", "f1")] == pytest.approx(expected[:3])
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, p, average="macro", zero_division=0))
    assert m["confusion_matrix"] == skm.confusion_matrix(y, p, labels=range(10)).tolist()
    for k in (2, 3, 5):
        assert m["top_k_accuracy"][str(k)] == pytest.approx(skm.top_k_accuracy_score(y, pred.probs, k=k,
                                                                                       labels=range(10)))
    probs64 = pred.probs.astype(np.float64) / pred.probs.astype(np.float64).sum(axis=1, keepdims=True)
    assert m["nll"] == pytest.approx(skm.log_loss(y, probs64, labels=range(10)), rel=1e-4)
    assert m["n_errors"] == int((y != p).sum())


def test_ece_and_bins_by_hand() -> None:
    # confidences 0.9 (right), 0.9 (wrong), 0.6 (right), 0.6 (right); 10 bins
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.6, 0.4]])
    labels = np.array([0, 1, 1, 0])
    # bin (0.8, 0.9]: acc 0.5 conf 0.9 -> |0.4| x 2/4; bin (0.5, 0.6]: acc 1.0 conf 0.6 -> |0.4| x 2/4
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(0.4)
    bins = calibration_bins(probs, labels, n_bins=10)
    assert [b["count"] for b in bins] == [0, 0, 0, 0, 0, 2, 0, 0, 2, 0]
    assert bins[8]["accuracy"] == pytest.approx(0.5) and bins[5]["confidence"] == pytest.approx(0.6)
    perfect = np.eye(3)[[0, 1, 2]]
    assert expected_calibration_error(perfect, np.array([0, 1, 2])) == pytest.approx(0.0)


def test_top_k_accuracy_matches_sklearn_on_uninformative_probabilities() -> None:
    """Random probabilities (the true class anywhere in the ranking), every k, against scikit-learn."""
    rng = np.random.default_rng(7)
    probs = rng.dirichlet(np.ones(10), size=500)
    labels = rng.integers(0, 10, size=500)
    for k in range(1, 10):
        assert top_k_accuracy(probs, labels, k) == pytest.approx(
            skm.top_k_accuracy_score(labels, probs, k=k, labels=range(10))), k
    assert top_k_accuracy(probs[:1], labels[:1], 10) == 1.0  # one sample, every class in the top 10
    assert np.isnan(top_k_accuracy(probs[:0], labels[:0], 2))  # no samples: no accuracy, not 0


def test_weighted_averages_of_a_single_sample() -> None:
    """One sample, predicted right: its class has precision = recall = F1 = 1, weight 1 (support 1 of 1)."""
    cm = np.zeros((3, 3), dtype=np.int64)
    cm[1, 1] = 1
    result = averages(per_class_scores(cm))
    assert result["weighted"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert result["macro"] == pytest.approx({"precision": 1 / 3, "recall": 1 / 3, "f1": 1 / 3})


def test_calibration_bins_put_an_edge_in_the_bin_below_and_the_lowest_in_the_first() -> None:
    """Bins (lo, hi]: 5 bins of 0.2. Confidences 0.1 (all ten classes equal), 0.2 (on an edge), 0.21, 1.0."""
    uniform = np.full(10, 0.1)
    on_edge = np.array([0.2] + [0.8 / 9] * 9)
    above = np.array([0.21] + [0.79 / 9] * 9)
    certain = np.eye(10)[0]
    probs = np.stack([uniform, on_edge, above, certain])
    bins = calibration_bins(probs, np.zeros(4, dtype=int), n_bins=5)
    assert [b["count"] for b in bins] == [2, 1, 0, 0, 1]
    assert [b["lo"] for b in bins] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])
    assert [b["hi"] for b in bins] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert bins[0]["confidence"] == pytest.approx(0.15) and bins[4]["confidence"] == 1.0
    # ECE of one sample, right at confidence 0.9: |1 - 0.9|; of none: undefined, not 0
    assert expected_calibration_error(np.array([[0.9, 0.1]]), np.array([0])) == pytest.approx(0.1)
    assert np.isnan(expected_calibration_error(np.zeros((0, 2)), np.zeros(0, dtype=int)))


def test_the_documented_defaults_are_the_evaluators() -> None:
    """docs/evaluation.md: top-2/3/5, 15 equal-width confidence bins, low confidence below 0.8."""
    docs = (ROOT / "docs" / "evaluation.md").read_text()
    assert "top-2/3/5 accuracy" in docs and "15 equal-width confidence bins" in docs
    assert "top probability < 0.8" in docs
    pred = hand_made(200, with_images=False)
    m = compute_metrics(pred)
    assert sorted(m["top_k_accuracy"]) == ["2", "3", "5"] and m["calibration_bins"] == 15
    assert m["ece"] == pytest.approx(expected_calibration_error(pred.probs, pred.labels, n_bins=15))
    assert m["low_confidence"]["threshold"] == 0.8
    assert m["low_confidence"]["count"] == int((pred.probs.max(axis=1) < 0.8).sum())


def test_low_confidence_is_strictly_below_the_threshold_and_scored_by_hand() -> None:
    """Confidences 0.8 (on the threshold: not low), 0.7 right, 0.6 wrong, 0.55 right: 3 low, 2 of them right."""
    probs = np.array([[0.8, 0.2], [0.7, 0.3], [0.4, 0.6], [0.45, 0.55]])
    pred = Predictions(probs=probs, labels=np.array([0, 0, 0, 1]), indices=np.arange(4), dataset="fashion",
                       model="hand", class_names=["a", "b"])
    low = compute_metrics(pred)["low_confidence"]
    assert low == {"threshold": 0.8, "count": 3, "fraction": 0.75, "accuracy": pytest.approx(2 / 3)}
    empty = Predictions(probs=np.zeros((0, 2)), labels=np.zeros(0, dtype=int), indices=np.zeros(0, dtype=int),
                        dataset="fashion", model="hand", class_names=["a", "b"])
    assert compute_metrics(empty)["low_confidence"] == {"threshold": 0.8, "count": 0, "fraction": 0.0,
                                                         "accuracy": None}


def test_top_k_is_reported_for_k_from_1_to_below_the_class_count() -> None:
    """k = 0 means nothing and k = number of classes is always 100%: both left out."""
    pred = hand_made(100, with_images=False)
    assert sorted(compute_metrics(pred, top_k=(0, 1, 9, 10))["top_k_accuracy"], key=int) == ["1", "9"]
    assert compute_metrics(pred, top_k=(1,))["top_k_accuracy"]["1"] == compute_metrics(pred)["accuracy"]


def test_the_report_lists_the_ten_most_confused_pairs() -> None:
    """docs/evaluation.md: confused_pairs.csv holds the 10 largest off-diagonal cells (here 90 are non-zero)."""
    assert "`confused_pairs.csv` (the 10 largest off-diagonal cells)" in (ROOT / "docs" / "evaluation.md").read_text()
    labels = np.repeat(np.arange(10), 10)
    preds = np.tile(np.arange(10), 10)  # every cell of the confusion matrix once
    probs = np.eye(10)[preds] * 0.9 + 0.01
    pred = Predictions(probs=probs, labels=labels, indices=np.arange(100), dataset="fashion", model="hand",
                       class_names=FASHION_CLASSES)
    assert len(compute_metrics(pred)["most_confused"]) == 10


def test_most_confused_pairs_largest_first() -> None:
    cm = np.array([[50, 3, 0], [7, 40, 1], [0, 7, 30]])
    pairs = most_confused(cm, ["a", "b", "c"], k=3)
    assert [(p["true_name"], p["predicted_name"], p["count"]) for p in pairs] == [
        ("b", "a", 7), ("c", "b", 7), ("a", "b", 3)]
    assert len(most_confused(np.diag([5, 5]), ["a", "b"])) == 0


def test_predictions_validate_and_round_trip(tmp_path: Path) -> None:
    pred = hand_made(50)
    assert pred.preds.dtype == np.int64 and pred.probs.dtype == np.float32
    pred.meta["checkpoint"] = "x.ckpt"
    again = Predictions.load(pred.save(tmp_path / "p.npz"))
    np.testing.assert_array_equal(again.probs, pred.probs)
    np.testing.assert_array_equal(again.indices, pred.indices)
    np.testing.assert_array_equal(again.images, pred.images)
    assert (again.class_names, again.model, again.split, again.meta) == (pred.class_names, "hand", "test",
                                                                          {"checkpoint": "x.ckpt"})
    with pytest.raises(FmnistError, match="50 probability rows but 49 labels"):
        Predictions(pred.probs, pred.labels[:49], pred.indices[:49], "fashion", "m", FASHION_CLASSES)
    with pytest.raises(FmnistError, match="10 probability columns but 3 class names"):
        Predictions(pred.probs, pred.labels, pred.indices, "fashion", "m", ("a", "b", "c"))
    with pytest.raises(FmnistError, match="no predictions file"):
        Predictions.load(tmp_path / "missing")


# -- report folder -------------------------------------------------------------------------------------
def test_write_report_files_and_contents(tmp_path: Path) -> None:
    pred = hand_made()
    out = tmp_path / "rep"
    metrics = write_report(pred, out, low_confidence=0.8, extra={"train_seconds": 1.5})
    assert {p.name for p in out.iterdir()} >= REPORT_FILES
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["accuracy"] == pytest.approx(metrics["accuracy"]) and on_disk["name"] == "rep"
    assert on_disk["train_seconds"] == 1.5 and on_disk["dataset"] == "fashion" and on_disk["n"] == 400
    for key in ("macro", "weighted", "per_class", "confusion_matrix", "top_k_accuracy", "ece", "most_confused"):
        assert key in on_disk

    errors = read_csv(out / "misclassified.csv")
    assert len(errors) == metrics["n_errors"]
    confidences = [float(r["confidence"]) for r in errors]
    assert confidences == sorted(confidences, reverse=True)
    assert {int(r["index"]) for r in errors} <= set(pred.indices.tolist())  # original indices, not positions
    assert all(r["true"] != r["predicted"] for r in errors)

    low = read_csv(out / "low_confidence.csv")
    assert len(low) == int((pred.confidence < 0.8).sum()) == metrics["low_confidence"]["count"] > 0
    assert all(float(r["confidence"]) < 0.8 for r in low)

    cm_rows = read_csv(out / "confusion_matrix.csv")
    assert [r["true \\ predicted"] for r in cm_rows] == list(FASHION_CLASSES)
    assert [[int(r[c]) for c in FASHION_CLASSES] for r in cm_rows] == metrics["confusion_matrix"]
    per_class = read_csv(out / "per_class.csv")
    assert [r["name"] for r in per_class[-2:]] == ["macro avg", "weighted avg"]
    assert float(per_class[-2]["f1"]) == pytest.approx(metrics["macro"]["f1"], abs=1e-6)
    assert "Shirt" in (out / "classification_report.txt").read_text()
    assert (out / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"


def test_report_without_images_or_plots(tmp_path: Path) -> None:
    metrics = write_report(hand_made(60, with_images=False), tmp_path / "r", plots=False, save_predictions=False)
    names = {p.name for p in (tmp_path / "r").iterdir()}
    assert "misclassified.png" not in names and "predictions.npz" not in names and "metrics.json" in names
    assert metrics["files"] == sorted(names, key=metrics["files"].index)


# -- the deep checkpoint path --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(synthetic_data_dir: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A one-epoch `scratch` model on the synthetic set, saved like a training run, with its own test metrics."""
    import lightning as L

    from fmnist.data.datamodule import ImageDataModule
    from fmnist.training.module import Classifier

    root = tmp_path_factory.mktemp("runs") / "scratch"
    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=1, logger=False,
                        enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
                        default_root_dir=root)
    model, dm = Classifier("scratch"), ImageDataModule(data_dir=synthetic_data_dir, batch_size=16)
    trainer.fit(model, dm)
    run_dir = root / "version_0"
    trainer.save_checkpoint(run_dir / "checkpoints" / "best.ckpt")
    test = trainer.test(model, dm, verbose=False)[0]
    (run_dir / "metrics.json").write_text(json.dumps({"model": "scratch", "dataset": "fashion",
                                                      "test_acc": test["test_acc"],
                                                      "test_macro_f1": test["test_macro_f1"],
                                                      "trainable_params": 225034, "wall_seconds": 3.0}))
    return {"run_dir": run_dir, "test": test, "data_dir": synthetic_data_dir, "dm": dm}


def test_checkpoint_report_matches_training_test_metrics(tiny_run: dict, tmp_path: Path) -> None:
    out = tmp_path / "deep"
    assert cli_main([str(tiny_run["run_dir"]), "--data-dir", tiny_run["data_dir"], "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["accuracy"] == pytest.approx(tiny_run["test"]["test_acc"], abs=1e-6)
    assert m["macro"]["f1"] == pytest.approx(tiny_run["test"]["test_macro_f1"], abs=1e-5)
    assert m["training_test_acc"] == pytest.approx(m["accuracy"], abs=1e-6)
    assert (m["model"], m["kind"], m["dataset"], m["split"], m["n"]) == ("scratch", "cnn", "fashion", "test", 100)
    assert m["run"] == "scratch_v0" and m["checkpoint"].endswith("best.ckpt") and m["train_seconds"] == 3.0
    assert m["trainable_params"] == 225034 and m["timing"]["predict_seconds"] >= 0
    assert REPORT_FILES - {"misclassified.png"} <= {p.name for p in out.iterdir()}
    pred = Predictions.load(out)
    np.testing.assert_array_equal(pred.indices, np.arange(100))
    assert latest_version(tiny_run["run_dir"].parent) == tiny_run["run_dir"]  # `evaluate.py lightning_logs/scratch`
    assert pred.images.shape == (100, 28, 28) and pred.images.dtype == np.uint8


def test_checkpoint_cross_dataset_and_val_split(tiny_run: dict, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # default report folder: reports/<run>_<dataset>-<split>
    assert cli_main([str(tiny_run["run_dir"] / "checkpoints" / "best.ckpt"), "--dataset", "mnist", "--split", "val",
                     "--data-dir", tiny_run["data_dir"], "--no-plots"]) == 0
    out = tmp_path / "reports" / "scratch_v0_mnist-val"
    m = json.loads((out / "metrics.json").read_text())
    assert (m["dataset"], m["split"], m["trained_on"]) == ("mnist", "val", "fashion")
    assert m["class_names"][0] == "0" and "training_test_acc" not in m
    pred = Predictions.load(out)
    assert pred.output_names == FASHION_CLASSES  # predicted columns keep the model's class names
    from fmnist.data.sources import load_dataset

    _, val_idx = tiny_run["dm"].split_indices(load_dataset("mnist", tiny_run["data_dir"]).train_labels)
    np.testing.assert_array_equal(pred.indices, val_idx)  # the training run's own stratified validation split
    header = (out / "confusion_matrix.csv").read_text().splitlines()[0]
    assert "T-shirt/top" in header


# -- user errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("argv", "message"), [
    ([], "nothing to evaluate"),
    (["run", "--baseline", "svm"], "not both"),
    (["--baseline", "svm", "--low-confidence", "1.5"], "--low-confidence must be in"),
])
def test_cli_argument_errors(argv: list[str], message: str) -> None:
    with pytest.raises(FmnistError, match=message):
        cli_main(argv)


def test_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(FmnistError, match="does not exist"):
        cli_main([str(tmp_path / "nope")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FmnistError, match=r"no checkpoint \(\*\.ckpt\)"):
        cli_main([str(tmp_path / "empty")])
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(FmnistError, match="not a readable checkpoint"):
        cli_main([str(tmp_path / "bad.ckpt")])


def test_bad_path_is_one_sentence_without_traceback(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), str(tmp_path / "missing_run")],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "missing_run does not exist" in lines[0]
