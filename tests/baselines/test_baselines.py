"""scikit-learn baselines: every one through the CLI on a small synthetic set, caching, overrides, errors."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fmnist import baselines as B
from fmnist.commands import call
from fmnist.commands.values import parse_params
from fmnist.errors import FmnistError
from fmnist.predictions import Predictions

cli_main = functools.partial(call, "evaluate")  # the verb, errors raised (not printed)


ROOT = Path(__file__).resolve().parents[2]


def run_baseline(name: str, data_dir: str, tmp: Path, *extra: str) -> dict:
    out = tmp / f"report-{name}"
    argv = ["--baseline", name, "--data-dir", data_dir, "--train-subset", "300", "--n-jobs", "1",
            "--calibration-size", "100", "--artifacts", str(tmp / "artifacts"), "--out", str(out), *extra]
    assert cli_main(argv) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("name", B.BASELINE_NAMES)
def test_every_baseline_fits_and_predicts_through_the_cli(name: str, synthetic_data_dir: str, tmp_path: Path,
                                                         capsys) -> None:
    m = run_baseline(name, synthetic_data_dir, tmp_path, "--no-plots")
    printed = capsys.readouterr().out
    assert f"{name}: fit " in printed and "predict" in printed  # fit and predict seconds are printed
    assert (m["model"], m["kind"], m["dataset"], m["split"], m["n"], m["n_train"]) == (
        name, "baseline", "fashion", "test", 100, 300)
    assert m["accuracy"] > 0.5  # the synthetic classes are separable
    assert m["timing"]["fit_seconds"] > 0 and m["timing"]["predict_seconds"] >= 0
    spec = B.get_baseline(name)
    assert m["params"] == json.loads(json.dumps(spec.defaults)) and m["benchmark_accuracy"] == spec.benchmark
    # probabilities are proper, and their argmax is the estimator's own predict
    pred = Predictions.load(tmp_path / f"report-{name}")
    np.testing.assert_allclose(pred.probs.sum(axis=1), 1.0, rtol=1e-5)
    fitted = B.load_fitted(Path(m["artifact"]), spec)
    data = B.baseline_data("fashion", synthetic_data_dir, train_subset=300)
    np.testing.assert_array_equal(pred.preds, fitted.estimator.predict(data.X_test))
    assert Path(m["artifact"]).name.startswith(f"{name}-") and Path(m["artifact"]).suffix == ".skops"


def test_saved_estimator_is_reloaded_not_refit(synthetic_data_dir: str, tmp_path: Path, capsys) -> None:
    first = run_baseline("svm", synthetic_data_dir, tmp_path, "--no-plots")
    artifact = Path(first["artifact"])
    stamp = artifact.stat().st_mtime_ns
    second = run_baseline("svm", synthetic_data_dir, tmp_path, "--no-plots")
    assert "reloaded from" in capsys.readouterr().out
    assert second["reloaded"] and not first["reloaded"] and artifact.stat().st_mtime_ns == stamp
    assert second["accuracy"] == first["accuracy"] and second["temperature"] == first["temperature"]
    assert second["timing"]["fit_seconds"] == first["timing"]["fit_seconds"]  # the recorded fit time
    third = run_baseline("svm", synthetic_data_dir, tmp_path, "--no-plots", "--refit")
    assert not third["reloaded"] and artifact.stat().st_mtime_ns != stamp


def test_param_override_changes_cache_key_and_report_name(synthetic_data_dir: str, tmp_path: Path,
                                                          monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["--baseline", "knn", "--data-dir", synthetic_data_dir, "--train-subset", "300", "--n-jobs", "1",
            "--no-plots", "--artifacts", "art"]
    assert cli_main(argv) == 0
    assert cli_main([*argv, "--param", "n_neighbors=3", "--split", "val"]) == 0
    default = json.loads((tmp_path / "reports" / "knn-n300" / "metrics.json").read_text())
    changed = json.loads((tmp_path / "reports" / "knn-n300-n_neighbors3_fashion-val" / "metrics.json").read_text())
    assert changed["params"]["n_neighbors"] == 3 and default["params"]["n_neighbors"] == 5
    assert changed["artifact"] != default["artifact"] and len(list((tmp_path / "art").glob("knn-*.skops"))) == 2
    assert changed["split"] == "val" and changed["n"] == 90  # 15% of 600, indices into the training images
    assert set(Predictions.load(tmp_path / "reports" / "knn-n300-n_neighbors3_fashion-val").indices) <= set(range(600))


def test_parse_and_resolve_params() -> None:
    assert parse_params(["C=5", "gamma=auto", "hidden_layer_sizes=(64, 32)", "max_depth=None"]) == {
        "C": 5, "gamma": "auto", "hidden_layer_sizes": (64, 32), "max_depth": None}
    with pytest.raises(FmnistError, match="NAME=VALUE"):
        parse_params(["C"])
    with pytest.raises(FmnistError, match="svm \\(SVC\\) has no parameter bogus"):
        B.resolve_params(B.get_baseline("svm"), {"bogus": 1})
    params = B.resolve_params(B.get_baseline("logreg"), {"C": 0.5, "n_jobs": 4})
    assert params["C"] == 0.5 and params["l1_ratio"] == 1.0 and "n_jobs" not in params


def test_defaults_are_the_benchmark_settings() -> None:
    svm = B.build_estimator(B.get_baseline("svm"), B.resolve_params(B.get_baseline("svm")))
    assert (svm.C, svm.kernel, svm.break_ties) == (10.0, "rbf", True)
    rf = B.build_estimator(B.get_baseline("rf"), B.resolve_params(B.get_baseline("rf")), n_jobs=2)
    assert (rf.n_estimators, rf.criterion, rf.max_depth, rf.n_jobs) == (100, "entropy", 100, 2)
    knn = B.build_estimator(B.get_baseline("knn"), B.resolve_params(B.get_baseline("knn")))
    assert (knn.n_neighbors, knn.p, knn.weights) == (5, 1, "distance")
    mlp = B.build_estimator(B.get_baseline("mlp"), B.resolve_params(B.get_baseline("mlp")))
    assert (mlp.activation, tuple(mlp.hidden_layer_sizes)) == ("relu", (100,))
    logreg = B.build_estimator(B.get_baseline("logreg"), B.resolve_params(B.get_baseline("logreg")), n_jobs=2)
    assert type(logreg).__name__ == "OneVsRestClassifier" and logreg.n_jobs == 2
    assert (logreg.estimator.C, logreg.estimator.l1_ratio) == (1.0, 1.0)


def test_temperature_recovers_a_known_scale() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(scale=3.0, size=(4000, 10))
    true_t = 2.0
    probs = np.exp(scores / true_t) / np.exp(scores / true_t).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(10, p=p) for p in probs])
    assert B.fit_temperature(scores, labels) == pytest.approx(true_t, rel=0.1)


def test_probabilities_cover_classes_missing_from_training() -> None:
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(90, 5)), np.repeat(np.arange(9), 10)  # class 9 never seen
    X[np.arange(90), y % 5] += 5 * (1 + y // 5)
    for estimator, name in ((DecisionTreeClassifier(random_state=0), "rf"), (SVC(break_ties=True), "svm")):
        fitted = B.FittedBaseline(name, estimator.fit(X, y), {}, None, 90, 0.0, temperature=1.0)
        probs = B.predict_proba(fitted, X, num_classes=10, n_jobs=1)
        assert probs.shape == (90, 10) and probs[:, 9].max() < 1e-6
        np.testing.assert_array_equal(probs.argmax(axis=1), estimator.predict(X))


def test_cache_key_depends_on_params_subset_and_data() -> None:
    base = B.cache_key("svm", {"C": 10.0}, None, "abc")
    assert base == B.cache_key("svm", {"C": 10.0}, None, "abc")
    assert len({base, B.cache_key("svm", {"C": 5.0}, None, "abc"), B.cache_key("svm", {"C": 10.0}, 300, "abc"),
                B.cache_key("svm", {"C": 10.0}, None, "abd")}) == 4


def test_unknown_baseline_is_one_sentence_without_traceback(tmp_path: Path) -> None:
    with pytest.raises(FmnistError, match="choose one of: logreg, svm, rf, knn, mlp"):
        cli_main(["--baseline", "xgboost"])
    result = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "--baseline", "xgboost"],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == ("error: Unknown baseline 'xgboost'; choose one of: logreg, svm, rf, knn, mlp.")


def test_too_small_train_subset_is_clear(synthetic_data_dir: str) -> None:
    with pytest.raises(FmnistError, match="--train-subset must be at least 20"):
        cli_main(["--baseline", "knn", "--data-dir", synthetic_data_dir, "--train-subset", "5"])
