"""Ensembles: identical members give the member back, probabilities are averaged, mismatches are refused."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import write_synthetic_dataset

from fmnist.commands.shims import evaluate_py as evaluate_main
from fmnist.data.sources import FASHION_CLASSES
from fmnist.errors import FmnistError
from fmnist.evaluation.ensemble import ensemble_predictions
from fmnist.evaluation.metrics import compute_metrics
from fmnist.predictions import Predictions


def _pred(seed: int, n: int = 300, model: str = "m") -> Predictions:
    rng = np.random.default_rng(seed)
    labels = np.random.default_rng(0).integers(0, 10, size=n)
    logits = rng.normal(size=(n, 10)) + 2.0 * np.eye(10)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return Predictions(probs=probs, labels=labels, indices=np.arange(n), dataset="fashion", model=model,
                       class_names=FASHION_CLASSES, meta={"run": f"{model}_v{seed}", "kind": "cnn"})


def test_ensemble_of_identical_runs_equals_the_run() -> None:
    member = _pred(1)
    ensemble = ensemble_predictions([member, member, member])
    np.testing.assert_allclose(ensemble.probs, member.probs, atol=1e-7)
    single, combined = compute_metrics(member), compute_metrics(ensemble)
    assert combined["confusion_matrix"] == single["confusion_matrix"]
    for key in ("accuracy", "nll", "ece", "macro_f1"):
        assert combined[key] == pytest.approx(single[key], abs=1e-6)
    assert ensemble.meta["members"] == ["m_v1", "m_v1", "m_v1"] and ensemble.model == "ensemble-mx3"


def test_ensemble_averages_probabilities_and_helps() -> None:
    members = [_pred(seed) for seed in (1, 2, 3, 4, 5)]
    ensemble = ensemble_predictions(members, model="five")
    np.testing.assert_allclose(ensemble.probs, np.mean([m.probs for m in members], axis=0), atol=1e-6)
    assert ensemble.model == "five" and ensemble.meta["kind"] == "ensemble"
    nll = [compute_metrics(m)["nll"] for m in members]
    assert compute_metrics(ensemble)["nll"] < min(nll)  # independent errors average out
    assert ensemble_predictions([_pred(1, model="a"), _pred(2, model="b")]).model == "ensemble-a+b"


def test_members_must_have_predicted_the_same_samples() -> None:
    a = _pred(1)
    with pytest.raises(FmnistError, match="predicted different samples"):
        ensemble_predictions([a, _pred(2, n=200)])
    with pytest.raises(FmnistError, match="predicted different samples"):
        ensemble_predictions([a, dataclasses.replace(a, indices=a.indices + 1)])
    with pytest.raises(FmnistError, match="disagree on split"):
        ensemble_predictions([a, dataclasses.replace(a, split="val")])
    with pytest.raises(FmnistError, match="at least one member"):
        ensemble_predictions([])


@pytest.mark.slow  # a subprocess variant; ensembles run by default through ood and photo predict
def test_ensemble_command_of_twin_checkpoints(cnn_checkpoint: Path, tmp_path: Path) -> None:
    synthetic_data_dir = str(tmp_path / "data")  # the session's synthetic data, in a root of its own (fashion-c)
    write_synthetic_dataset(synthetic_data_dir, "fashion", seed=0)
    write_synthetic_dataset(synthetic_data_dir, "mnist", seed=1)
    twin = Path(shutil.copy(cnn_checkpoint, tmp_path / "twin.ckpt"))
    single = tmp_path / "single"
    assert evaluate_main([str(cnn_checkpoint), "--data-dir", synthetic_data_dir, "--out", str(single),
                          "--no-plots"]) == 0
    out = tmp_path / "ensemble"
    code = evaluate_main(["ensemble", str(cnn_checkpoint), str(twin), "--data-dir", synthetic_data_dir,
                          "--ood", "mnist", "noise", "--fit-size", "200", "--calibrate", "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    reference = json.loads((single / "metrics.json").read_text())
    assert metrics["accuracy"] == reference["accuracy"]
    assert metrics["nll"] == pytest.approx(reference["nll"], abs=1e-6)
    assert metrics["members"] == ["cnn_cnn", "cnn_twin"]
    summary = json.loads((out / "ensemble.json").read_text())
    assert [m["name"] for m in summary["members"]] == ["cnn_cnn", "cnn_twin"]
    assert summary["ensemble"]["accuracy"] == metrics["accuracy"]
    assert summary["calibration"]["temperature"] > 0
    assert summary["calibration"]["test"]["after"]["accuracy"] == metrics["accuracy"]
    mean_acc = summary["robustness"]
    assert mean_acc["ensemble-cnnx2"]["mean_accuracy"] == pytest.approx(mean_acc["cnn_cnn"]["mean_accuracy"])
    ood = json.loads((out / "ood.json").read_text())
    assert {r["model"] for r in ood["rows"]} == {"cnn_cnn", "cnn_twin", "ensemble-cnnx2"}
    for name in ("robustness.json", "corruption_accuracy.png", "ood_scores.png", "reliability.png"):
        assert (out / name).stat().st_size > 0


def test_ensemble_command_refuses_one_member_or_a_repeat(cnn_checkpoint: Path, capsys) -> None:
    assert evaluate_main(["ensemble", str(cnn_checkpoint)]) == 2
    assert "at least two runs" in capsys.readouterr().err
    assert evaluate_main(["ensemble", str(cnn_checkpoint), str(cnn_checkpoint)]) == 2
    assert "listed twice" in capsys.readouterr().err
