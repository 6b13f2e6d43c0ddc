"""Temperature scaling: it fixes a synthetic overconfident model, never moves the argmax, and is saved with the run."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from fmnist.commands.shims import evaluate_py as evaluate_main
from fmnist.data.sources import FASHION_CLASSES, load_dataset
from fmnist.errors import FmnistError
from fmnist.evaluation import calibration as C
from fmnist.evaluation.metrics import compute_metrics
from fmnist.evaluation.scoring import load_scorer
from fmnist.predictions import Predictions


def overconfident(n: int, sharpen: float = 4.0, seed: int = 0) -> Predictions:
    """Labels drawn from softmax(z) (so T = 1 on z is calibrated); the model reports softmax(sharpen * z)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=1.5, size=(n, 10))
    true = C.softmax(z).astype(np.float64)
    labels = np.array([rng.choice(10, p=row / row.sum()) for row in true])
    return Predictions(probs=C.softmax(sharpen * z), labels=labels, indices=np.arange(n), dataset="fashion",
                       model="overconfident", class_names=FASHION_CLASSES)


def test_temperature_scaling_fixes_an_overconfident_model() -> None:
    val, test = overconfident(4000, seed=1), overconfident(4000, seed=2)
    temperature = C.fit_temperature(val)
    assert temperature == pytest.approx(4.0, rel=0.1)  # undoes the sharpening
    result = C.before_after(test, temperature)
    before, after = result["before"], result["after"]
    assert after["nll"] < before["nll"] - 0.2
    assert after["ece"] < before["ece"] / 3
    assert after["accuracy"] == before["accuracy"]
    assert after["mean_confidence"] < before["mean_confidence"]


def test_an_underconfident_model_gets_a_temperature_below_one() -> None:
    val = overconfident(3000, sharpen=0.5, seed=3)
    temperature = C.fit_temperature(val)
    assert temperature == pytest.approx(0.5, rel=0.1)
    assert C.before_after(val, temperature)["after"]["nll"] < C.before_after(val, temperature)["before"]["nll"]


def test_temper_keeps_argmax_and_is_the_identity_at_one() -> None:
    probs = overconfident(300).probs
    np.testing.assert_allclose(C.temper(probs, 1.0), probs, atol=1e-6)
    for t in (0.3, 2.0, 10.0):
        scaled = C.temper(probs, t)
        np.testing.assert_array_equal(scaled.argmax(axis=1), probs.argmax(axis=1))
        np.testing.assert_allclose(scaled.sum(axis=1), 1.0, atol=1e-5)
    # T -> large flattens towards uniform, T -> small sharpens towards one-hot
    assert C.temper(probs, 100.0).max(axis=1).max() < 0.2
    assert np.median(C.temper(probs, 0.01).max(axis=1)) > 0.99  # near-ties stay near-ties
    pred = C.apply_temperature(overconfident(50), 2.0)
    assert pred.meta["temperature"] == 2.0


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_temperature_is_one_clear_error(bad: float) -> None:
    with pytest.raises(FmnistError, match="a temperature must be a positive number"):
        C.temper(overconfident(5).probs, bad)


def test_temperature_file_lives_with_the_run(tmp_path: Path) -> None:
    assert C.temperature_file({"run_dir": str(tmp_path), "checkpoint": "x"}) == tmp_path / "temperature.json"
    assert C.temperature_file({"checkpoint": str(tmp_path / "m.ckpt")}) == tmp_path / "m.temperature.json"
    assert C.temperature_file({"artifact": str(tmp_path / "svm-ab.skops")}) == tmp_path / "svm-ab.temperature.json"
    with pytest.raises(FmnistError, match="no run folder, checkpoint or saved estimator"):
        C.temperature_file({})


def test_saved_temperature_round_trip_and_stale_weights(tmp_path: Path) -> None:
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"weights v1")
    meta = {"checkpoint": str(checkpoint)}
    with pytest.raises(FmnistError, match=r"no saved temperature .*evaluate.py calibrate"):
        C.load_temperature(meta, "model")
    path = C.save_temperature(meta, {"temperature": 1.7})
    assert path == tmp_path / "model.temperature.json"
    assert C.load_temperature(meta) == pytest.approx(1.7)
    assert json.loads(path.read_text())["weights_sha256"]
    checkpoint.write_bytes(b"weights v2, retrained")
    with pytest.raises(FmnistError, match="fitted for other weights"):
        C.load_temperature(meta)
    path.write_text("{not json")
    with pytest.raises(FmnistError, match="not a temperature file"):
        C.load_temperature(meta)


def test_calibrate_command_saves_and_applies_the_temperature(cnn_checkpoint: Path, synthetic_data_dir: str,
                                                             tmp_path: Path, capsys) -> None:
    checkpoint = Path(shutil.copy(cnn_checkpoint, tmp_path / "tiny.ckpt"))
    report = tmp_path / "calibration"
    code = evaluate_main(["calibrate", str(checkpoint), "--data-dir", synthetic_data_dir, "--out", str(report)])
    assert code == 0
    saved = json.loads((tmp_path / "tiny.temperature.json").read_text())
    record = json.loads((report / "calibration.json").read_text())
    assert saved["temperature"] == record["temperature"] > 0
    assert record["fitted_on"] == {"dataset": "fashion", "split": "val", "n": 90}
    assert record["val"]["after"]["nll"] <= record["val"]["before"]["nll"] + 1e-9
    assert record["test"]["after"]["accuracy"] == record["test"]["before"]["accuracy"]
    assert (report / "reliability_before.png").stat().st_size > 0 and (report / "reliability_after.png").is_file()
    assert "temperature T =" in capsys.readouterr().out

    out = tmp_path / "report_T"
    assert evaluate_main([str(checkpoint), "--data-dir", synthetic_data_dir, "--temperature", "--out", str(out),
                          "--no-plots"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["temperature"] == pytest.approx(saved["temperature"])
    assert metrics["nll"] == pytest.approx(saved["test"]["after"]["nll"], rel=1e-4)


def test_temperature_without_calibration_is_refused(cnn_checkpoint: Path, synthetic_data_dir: str, tmp_path: Path,
                                                    capsys) -> None:
    checkpoint = Path(shutil.copy(cnn_checkpoint, tmp_path / "uncalibrated.ckpt"))
    code = evaluate_main([str(checkpoint), "--data-dir", synthetic_data_dir, "--temperature", "--out",
                          str(tmp_path / "r"), "--no-plots"])
    assert code == 2
    assert "evaluate.py calibrate" in capsys.readouterr().err


def test_metrics_nll_matches_the_calibration_numbers() -> None:
    pred = overconfident(500)
    assert C.headline_scores(pred)["nll"] == pytest.approx(compute_metrics(pred)["nll"])


def test_a_scorer_applies_the_saved_temperature(cnn_checkpoint: Path, synthetic_data_dir: str, tmp_path: Path) -> None:
    checkpoint = Path(shutil.copy(cnn_checkpoint, tmp_path / "scored.ckpt"))
    raw = load_scorer(checkpoint, data_dir=synthetic_data_dir)
    images = load_dataset("fashion", synthetic_data_dir).test_images.numpy()[:20]
    with pytest.raises(FmnistError, match="no saved temperature"):
        load_scorer(checkpoint, data_dir=synthetic_data_dir, temperature=True)
    C.save_temperature(raw.meta, {"temperature": 2.5})
    tempered = load_scorer(checkpoint, data_dir=synthetic_data_dir, temperature=True)
    assert tempered.temperature == 2.5
    np.testing.assert_allclose(tempered.outputs(images).probs, C.temper(raw.outputs(images).probs, 2.5), atol=1e-6)
    np.testing.assert_allclose(tempered.outputs(images).probs, C.softmax(raw.outputs(images).logits / 2.5), atol=1e-5)
    pred = tempered.predictions(images, np.zeros(20, np.int64), dataset="fashion")
    assert pred.meta["temperature"] == 2.5


def test_temper_worked_by_hand_on_one_row_and_on_none() -> None:
    """At T = 2, softmax(log p / 2) = sqrt(p) / sum(sqrt(p)): [0.8, 0.2] -> [2/3, 1/3]; no rows stay no rows."""
    np.testing.assert_allclose(C.temper(np.array([[0.8, 0.2]]), 2.0), [[2 / 3, 1 / 3]], rtol=1e-6)
    empty = C.temper(np.zeros((0, 10)), 2.0)
    assert empty.shape == (0, 10) and empty.dtype == np.float32


def test_softmax_of_huge_logits_is_exact_not_nan() -> None:
    """The row maximum is subtracted before exp: logits of 1000 would overflow otherwise."""
    np.testing.assert_array_equal(C.softmax(np.array([[1000.0, 0.0], [0.0, -1000.0]])), [[1.0, 0.0], [1.0, 0.0]])


def test_a_temperature_needs_two_predictions_and_two_are_enough() -> None:
    pred = overconfident(2)
    assert C.fit_temperature(pred) > 0
    one = Predictions(probs=pred.probs[:1], labels=pred.labels[:1], indices=pred.indices[:1], dataset="fashion",
                      model="one", class_names=FASHION_CLASSES)
    with pytest.raises(FmnistError, match="cannot fit a temperature on 1 predictions"):
        C.fit_temperature(one)


def test_a_baselines_temperature_is_tied_to_its_saved_estimator(tmp_path: Path) -> None:
    """No checkpoint, an estimator file: the record names it and fingerprints it (sha256 worked by hashlib)."""
    artifact = tmp_path / "svm-ab.skops"
    artifact.write_bytes(b"estimator bytes")
    meta = {"artifact": str(artifact)}
    path = C.save_temperature(meta, {"temperature": 1.3})
    saved = json.loads(path.read_text())
    assert saved["weights"] == str(artifact)
    assert saved["weights_sha256"] == hashlib.sha256(b"estimator bytes").hexdigest()
    artifact.write_bytes(b"refitted estimator")
    with pytest.raises(FmnistError, match="fitted for other weights"):
        C.load_temperature(meta)


def test_a_missing_temperature_names_the_command_for_this_checkpoint(tmp_path: Path) -> None:
    checkpoint = tmp_path / "m.ckpt"
    with pytest.raises(FmnistError, match=rf"`python evaluate.py calibrate {re.escape(str(checkpoint))}`\.$"):
        C.load_temperature({"checkpoint": str(checkpoint)})


def test_calibrate_records_its_fit_time_and_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """The record's fit time is the fit's own (within the call's), rounded to 0.1 ms; the run name falls back
    to the model's."""
    val, test = overconfident(300, seed=5), overconfident(300, seed=6)
    monkeypatch.setattr(C, "evaluate", lambda target, split, **kwargs: val if split == "val" else test)
    started = time.perf_counter()
    record, scored = C.calibrate("anything", save=False)
    elapsed = time.perf_counter() - started
    assert 0 <= record["fit_seconds"] <= elapsed and record["fit_seconds"] == round(record["fit_seconds"], 4)
    assert record["run"] == "overconfident" and scored is test and "file" not in record
    assert record["temperature"] == pytest.approx(C.fit_temperature(val))


def test_a_run_folder_without_weights_keeps_a_temperature_without_a_fingerprint(tmp_path: Path) -> None:
    """Nothing to fingerprint (no checkpoint or estimator named, or the named one gone): saved and read back as is."""
    for meta in ({"run_dir": str(tmp_path / "a")}, {"run_dir": str(tmp_path / "b"), "checkpoint": "gone.ckpt"}):
        Path(meta["run_dir"]).mkdir()
        saved = json.loads(C.save_temperature(meta, {"temperature": 2.5}).read_text())
        assert saved["weights_sha256"] is None and saved["weights"] == meta.get("checkpoint")
        assert C.load_temperature(meta) == 2.5
