"""OOD detection: metrics on synthetic scores with a known AUROC, the scores themselves, out-sets, the command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.special import logsumexp
from scipy.stats import norm

from fmnist.commands.shims import evaluate_py as evaluate_main
from fmnist.errors import FmnistError
from fmnist.evaluation import ood as O
from fmnist.evaluation.calibration import softmax
from fmnist.evaluation.predict import evaluate
from fmnist.evaluation.scoring import Outputs, load_scorer


# -- metrics on scores with a known answer ------------------------------------------------------------
@pytest.mark.parametrize("shift", [0.5, 1.0, 2.0])
def test_gaussian_scores_give_the_textbook_auroc_and_fpr(shift: float) -> None:
    """in ~ N(shift, 1), out ~ N(0, 1): AUROC = Phi(shift / sqrt 2); FPR at 95% TPR = 1 - Phi(shift - 1.645)."""
    rng = np.random.default_rng(0)
    m = O.detection_metrics(rng.normal(shift, 1.0, 40_000), rng.normal(0.0, 1.0, 40_000))
    assert m["auroc"] == pytest.approx(norm.cdf(shift / np.sqrt(2)), abs=0.006)
    assert m["fpr_at_95_tpr"] == pytest.approx(1 - norm.cdf(shift + norm.ppf(0.05)), abs=0.01)
    assert 0.5 < m["aupr_in"] < 1 and 0.5 < m["aupr_out"] < 1
    assert (m["n_in"], m["n_out"]) == (40_000, 40_000)


def test_separated_identical_and_reversed_scores() -> None:
    perfect = O.detection_metrics(np.arange(10, 20), np.arange(0, 10))
    assert perfect == {"auroc": 1.0, "aupr_in": pytest.approx(1.0), "aupr_out": pytest.approx(1.0),
                       "fpr_at_95_tpr": 0.0, "n_in": 10, "n_out": 10}
    same = O.detection_metrics(np.ones(50), np.ones(30))
    assert same["auroc"] == 0.5 and same["fpr_at_95_tpr"] == 1.0
    reversed_ = O.detection_metrics(np.arange(0, 10), np.arange(10, 20))
    assert reversed_["auroc"] == 0.0 and reversed_["fpr_at_95_tpr"] == 1.0
    # 1 of 4 out-scores above every in-score except the lowest: AUROC = 1 - (3 + ...)/(n_in n_out) by hand
    m = O.detection_metrics(np.array([1.0, 5.0, 6.0, 7.0]), np.array([0.0, 2.0, 3.0, 8.0]))
    assert m["auroc"] == pytest.approx(10 / 16)
    with pytest.raises(FmnistError, match="at least one in-distribution and one out"):
        O.detection_metrics(np.ones(3), np.ones(0))


# -- the scores -----------------------------------------------------------------------------------------
def test_scores_by_hand() -> None:
    logits = np.array([[2.0, 0.0, -1.0], [0.1, 0.2, 0.3]], dtype=np.float32)
    outputs = Outputs(softmax(logits), logits)
    scores = O.model_scores(outputs)
    np.testing.assert_allclose(scores["msp"], softmax(logits).max(axis=1), rtol=1e-6)
    np.testing.assert_allclose(scores["energy"], logsumexp(logits, axis=1), rtol=1e-6)
    np.testing.assert_allclose(scores["max_logit"], [2.0, 0.3], rtol=1e-6)
    assert "mahalanobis" not in scores  # no features, no fit
    assert set(O.model_scores(Outputs(softmax(logits)))) == {"msp"}  # no logits: only msp
    assert set(O.model_scores(outputs, names=("energy",))) == {"energy"}


def test_mahalanobis_prefers_points_near_a_class_mean() -> None:
    rng = np.random.default_rng(0)
    means = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 0.0], [0.0, 6.0, 0.0]])
    labels = rng.integers(0, 3, size=3000)
    features = means[labels] + rng.normal(size=(3000, 3)) * np.array([1.0, 1.0, 0.1])
    fit = O.Mahalanobis.fit(features, labels, 3)
    np.testing.assert_allclose(fit.means, means, atol=0.1)
    inside = means[rng.integers(0, 3, 500)] + rng.normal(size=(500, 3)) * np.array([1.0, 1.0, 0.1])
    off_axis = means[rng.integers(0, 3, 500)] + np.array([0.0, 0.0, 1.0])  # tiny variance in z: far away
    assert O.detection_metrics(fit(inside), fit(off_axis))["auroc"] > 0.99
    assert fit(means).max() <= 0 and fit(means) == pytest.approx(0.0, abs=0.05)
    with pytest.raises(FmnistError, match=r"no training image of class\(es\) \[2\]"):
        O.Mahalanobis.fit(features[labels < 2], labels[labels < 2], 3)


def test_ensemble_scores_average_members() -> None:
    a = {"msp": np.array([0.9, 0.5]), "energy": np.array([2.0, 1.0])}
    b = {"msp": np.array([0.7, 0.4]), "energy": np.array([4.0, 3.0]), "max_logit": np.array([1.0, 1.0])}
    mean_probs = np.array([[0.6, 0.4], [0.5, 0.5]])
    combined = O.ensemble_scores([a, b], mean_probs)
    np.testing.assert_allclose(combined["msp"], [0.6, 0.5])  # from the averaged probabilities
    np.testing.assert_allclose(combined["energy"], [3.0, 2.0])
    assert "max_logit" not in combined  # not every member has it


# -- out-sets -------------------------------------------------------------------------------------------
def test_noise_sets_are_seeded_uint8_images() -> None:
    noise = O.load_out_set("noise", n=64, seed=3)
    assert noise.images.shape == (64, 28, 28) and noise.images.dtype == np.uint8 and noise.labels is None
    np.testing.assert_array_equal(noise.images, O.load_out_set("noise", n=64, seed=3).images)
    assert not np.array_equal(noise.images, O.load_out_set("noise", n=64, seed=4).images)
    gaussian = O.load_out_set("gaussian", n=2000, seed=0).images
    assert abs(gaussian.mean() - 128) < 3 and gaussian.min() == 0 and gaussian.max() == 255
    with pytest.raises(FmnistError, match="--out-size must be at least 1"):
        O.load_out_set("noise", n=0)


def test_datasets_folders_and_npz_as_out_sets(synthetic_data_dir: str, tmp_path: Path) -> None:
    mnist = O.load_out_set("mnist", data_dir=synthetic_data_dir)
    assert mnist.images.shape == (100, 28, 28) and mnist.labels is not None
    folder = tmp_path / "inputs"
    folder.mkdir()
    pixels = np.arange(784, dtype=np.uint8).reshape(28, 28)
    for i in range(3):
        Image.fromarray(pixels + i, mode="L").save(folder / f"{i:03d}.png")
    photos = O.load_out_set(str(folder))
    assert photos.name == "inputs" and photos.images.shape == (3, 28, 28)
    assert O.load_out_set(f"photos={folder}").name == "photos"
    np.testing.assert_array_equal(photos.images[1], pixels + 1)
    np.savez(tmp_path / "set.npz", images=np.stack([pixels] * 5))
    assert O.load_out_set(str(tmp_path / "set.npz")).images.shape == (5, 28, 28)

    Image.fromarray(np.zeros((40, 30), np.uint8)).save(folder / "big.png")
    with pytest.raises(FmnistError, match=r"big.png is 30x40, not 28x28; .*evaluate.py predict"):
        O.load_out_set(str(folder))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FmnistError, match="holds no images"):
        O.load_out_set(str(tmp_path / "empty"))
    np.savez(tmp_path / "bad.npz", images=np.zeros((2, 5, 5), np.float32))
    with pytest.raises(FmnistError, match=r"not uint8 \[N, 28, 28\]"):
        O.load_out_set(str(tmp_path / "bad.npz"))
    with pytest.raises(FmnistError, match="unknown out-set 'cifar'"):
        O.load_out_set("cifar")


# -- end to end -----------------------------------------------------------------------------------------
def test_ood_command_on_a_checkpoint_and_an_ensemble(cnn_checkpoint: Path, synthetic_data_dir: str,
                                                     tmp_path: Path) -> None:
    report = tmp_path / "ood"
    code = evaluate_main(["ood", str(cnn_checkpoint), "--out", "mnist", "noise", "--data-dir", synthetic_data_dir,
                          "--fit-size", "200", "--out-size", "100", "--report", str(report)])
    assert code == 0
    result = json.loads((report / "ood.json").read_text())
    assert {(r["out"], r["score"]) for r in result["rows"]} == {
        (o, s) for o in ("mnist", "noise") for s in O.SCORE_NAMES}
    assert result["in"] == {"dataset": "fashion", "split": "test", "n": 100}
    assert result["mahalanobis_fit"]["cnn_cnn"]["n"] == 200
    # The numbers again, from the evaluator's class probabilities and the definitions, not from ood.py:
    # accuracy on the 100 test images; AUROC = P(an in-image's max probability beats an out-image's), ties half;
    # FPR at 95% TPR = the share of out-images at or above the highest threshold that keeps 95 of the 100 in-images.
    fashion = evaluate(cnn_checkpoint, "fashion", "test", data_dir=synthetic_data_dir)
    digits = evaluate(cnn_checkpoint, "mnist", "test", data_dir=synthetic_data_dir)
    accuracy = float((fashion.probs.argmax(axis=1) == fashion.labels).mean())
    assert result["in_distribution"]["cnn_cnn"]["accuracy"] == pytest.approx(accuracy, abs=1e-9)
    in_msp, out_msp = fashion.probs.max(axis=1).astype(np.float64), digits.probs.max(axis=1).astype(np.float64)
    pairs = in_msp[:, None] - out_msp[None, :]
    auroc = float(((pairs > 0).sum() + 0.5 * (pairs == 0).sum()) / pairs.size)
    threshold = np.sort(in_msp)[::-1][94]  # the 95th highest in-score
    fpr = float((out_msp >= threshold).mean())
    row = next(r for r in result["rows"] if (r["model"], r["out"], r["score"]) == ("cnn_cnn", "mnist", "msp"))
    assert (row["auroc"], row["fpr_at_95_tpr"], row["n_in"], row["n_out"]) == (
        pytest.approx(auroc, abs=1e-6), pytest.approx(fpr, abs=1e-9), 100, 100)
    for name in ("ood.csv", "ood.md", "ood_scores.png", "ood_roc.png"):
        assert (report / name).stat().st_size > 0

    # the same weights twice: the ensemble's numbers are the member's
    twin = Path(shutil.copy(cnn_checkpoint, tmp_path / "twin.ckpt"))
    scorers = [load_scorer(p, data_dir=synthetic_data_dir) for p in (cnn_checkpoint, twin)]
    result = O.detect(scorers, out=["noise"], fit_size=200, out_size=100, data_dir=synthetic_data_dir)
    assert [m.name for m in result.models] == ["cnn_cnn", "cnn_twin", "ensemble"]
    for score in O.SCORE_NAMES:
        assert result.auroc("ensemble", "noise", score) == pytest.approx(result.auroc("cnn_cnn", "noise", score))


def test_ood_on_a_baseline_uses_its_decision_scores(synthetic_data_dir: str, tmp_path: Path) -> None:
    scorer = load_scorer("logreg", data_dir=synthetic_data_dir, n_jobs=1, artifacts_dir=tmp_path, log=lambda _: None)
    result = O.detect([scorer], out=["mnist"], data_dir=synthetic_data_dir)
    assert {r["score"] for r in result.rows} == {"msp", "energy", "max_logit"}  # no features: no Mahalanobis


def test_ood_command_errors_are_one_sentence(cnn_checkpoint: Path, synthetic_data_dir: str, capsys) -> None:
    assert evaluate_main(["ood", str(cnn_checkpoint), "--out", "cifar", "--data-dir", synthetic_data_dir]) == 2
    assert "unknown out-set 'cifar'" in capsys.readouterr().err
    assert evaluate_main(["ood", "no/such/run", "--data-dir", synthetic_data_dir]) == 2
    assert "neither a run folder, a checkpoint nor a baseline" in capsys.readouterr().err
    assert evaluate_main(["ood", str(cnn_checkpoint), "--in", "shapes"]) == 2
    assert "--in 'shapes' is not a dataset" in capsys.readouterr().err


def test_flip_tta_scores_one_row_per_image_from_true_logits(cnn_checkpoint: Path, synthetic_data_dir: str) -> None:
    """With flip TTA (vggbn, speedrun) features were doubled (two views) and energy was constant (log-probs)."""
    scorer = load_scorer(cnn_checkpoint, data_dir=synthetic_data_dir)
    images = np.random.default_rng(0).integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    plain = scorer.outputs(images, features=True)
    flipped = scorer.outputs(images[:, :, ::-1].copy(), features=True)
    module = scorer.trained.module
    module.hparams["flip_tta"] = True
    both = scorer.outputs(images, features=True)
    assert both.features.shape == plain.features.shape == (7, plain.features.shape[1])
    np.testing.assert_allclose(both.features, (plain.features + flipped.features) / 2, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(both.logits, (plain.logits + flipped.logits) / 2, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(both.probs, (plain.probs + flipped.probs) / 2, rtol=1e-4, atol=1e-6)
    assert np.ptp(O.model_scores(both, ["energy"], None)["energy"]) > 1e-3  # not logsumexp(log p) = 0
    with torch.no_grad():  # the evaluator's forward() averages the same views
        x = scorer.trained.transform(torch.from_numpy(images).float().div(255).unsqueeze(1))
        np.testing.assert_allclose(torch.exp(module(x)).numpy(), both.probs, rtol=1e-4, atol=1e-6)
