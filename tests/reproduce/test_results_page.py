"""The results page: numbers come from the runs' files, notes only where ours differs by > 1 point, and the
HTML draws its charts in headless Chromium without script errors (skipped where Chromium is missing)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fmnist.reproduce import Budget
from fmnist.reproduce.html_check import find_browser, render
from fmnist.reproduce.page import WHY, _seconds, collect, write_results

FULLISH = Budget("fullish", "FULLISH test budget", epochs=None, train_subset=None, seeds=(1, 2), cv_epochs=30,
                 cv_patience=8, baseline_subset=None, results_md="RESULTS-t.md", report_dir="reports/t")
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _run(root: Path, name: str, seed: int, test_acc: float, val_acc: float = 0.9, epochs: int = 9,
         shirt_acc: float = 0.75, precision: str | None = None) -> None:
    folder = root / f"{name}-s{seed}" / "version_0"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({**({"precision": precision} if precision else {}),
        "test_acc": test_acc, "val_acc": val_acc, "test_macro_f1": test_acc - 0.01, "epochs": epochs,
        "best_epoch": epochs - 3, "seconds_per_epoch": 30.0, "wall_seconds": 300.0, "trainable_params": 94154,
        "seed": seed, "git_commit": "abc1234", "per_class_acc": {**dict.fromkeys(CLASSES, test_acc),
                                                                 "Shirt": shirt_acc}}))


def _report(root: Path, name: str, accuracy: float) -> None:
    folder = root / "evaluation" / name
    folder.mkdir(parents=True)
    cm = [[90 if i == j else 1 for j in range(10)] for i in range(10)]
    (folder / "metrics.json").write_text(json.dumps({
        "accuracy": accuracy, "macro_f1": accuracy, "class_names": CLASSES, "confusion_matrix": cm,
        "per_class": [{"name": c, "f1": 0.9} for c in CLASSES], "n_train": 51000,
        "timing": {"fit_seconds": 12.5, "predict_seconds": 3.0}}))


@pytest.fixture()
def results_root(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    _run(root, "deep", 1, 0.915)
    _run(root, "deep", 2, 0.917)
    _run(root, "transfer", 1, 0.80)  # far below study B's 86.9%: needs its sentence
    _run(root, "deep-no-bn-dropout", 1, 0.70, val_acc=0.885)  # the study's ablation figure is a validation one
    _report(root, "deep-s1", 0.915)
    _report(root, "baseline-svm", 0.8985)
    return root


def test_numbers_come_from_the_runs_and_notes_only_beyond_one_point(results_root: Path) -> None:
    rows = {r["name"]: r for r in collect(results_root, FULLISH)["rows"]}
    deep = rows["deep"]
    assert deep["n"] == 2 and deep["mean"] == pytest.approx(0.916) and deep["std"] == pytest.approx(0.001414, abs=1e-5)
    assert "why" not in deep  # 91.6% vs study B's 91.3%: within a point
    assert rows["transfer"]["why"] == WHY["transfer"]
    assert rows["deep-no-bn-dropout"]["mean"] == 0.885 and "why" not in rows["deep-no-bn-dropout"]
    assert rows["baseline-svm"]["fit_seconds"] == 12.5 and rows["baseline-svm"]["n_train"] == 51000
    assert rows["resnet"].get("mean") is None and rows["resnet"].get("n", 0) == 0


def test_quick_budget_notes_say_it_is_the_budget(results_root: Path) -> None:
    quick = Budget(**{**FULLISH.__dict__, "name": "quick", "train_subset": 10000, "epochs": 3, "baseline_subset": 20000})
    rows = {r["name"]: r for r in collect(results_root, quick)["rows"]}
    assert rows["transfer"]["why"].startswith("Quick budget (10,000 training images, 3 epochs)")
    assert rows["baseline-svm"]["why"].startswith("Quick budget: fitted on 20,000 of the 51,000")


def test_written_page_and_markdown(results_root: Path, tmp_path: Path) -> None:
    md = write_results(results_root, FULLISH, {"deep": {"seconds": 600.0, "machine": "test box",
                                                        "command": "python -m fmnist.reproduce --only deep",
                                                        "commit": "abc1234"}}, repo=tmp_path)
    text = md.read_text()
    assert "91.60% ± 0.14" in text and "`python -m fmnist.reproduce --only deep`" in text and "`abc1234`" in text
    assert "**Study B: transfer from MNIST (frozen base)** (80.00% vs 86.90%)" in text
    assert "| svm | 89.85% |" in text and "| 51,000 | 12 s |" in text
    page = tmp_path / "reports" / "t" / "index.html"
    assert page.is_file() and "js-errors" in page.read_text()


def test_page_says_which_precision_the_cnns_trained_in(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    _run(root, "deep", 1, 0.915, precision="bf16-mixed")
    _run(root, "deep", 2, 0.917, precision="bf16-mixed")
    _run(root, "resnet", 1, 0.91, precision="32-true")
    (tmp_path / "repo").mkdir()
    text = write_results(root, FULLISH, {}, repo=tmp_path / "repo").read_text()
    assert "; CNN training precision: 32-true, bf16-mixed" in text
    html_text = (tmp_path / "repo" / "reports" / "t" / "index.html").read_text()
    assert "CNN training precision: 32-true, bf16-mixed" in html_text


def test_runs_from_before_precision_was_recorded_claim_none(results_root: Path, tmp_path: Path) -> None:
    assert "precision:" not in write_results(results_root, FULLISH, {}, repo=tmp_path).read_text()


@pytest.mark.skipif(find_browser() is None, reason="needs Chromium (Debian package `chromium`)")
def test_page_draws_every_chart_in_headless_chromium(results_root: Path, tmp_path: Path) -> None:
    write_results(results_root, FULLISH, {}, repo=tmp_path)
    result = render(tmp_path / "reports" / "t" / "index.html", screenshot=tmp_path / "shot.png")
    assert result.charts >= 3 and result.drawn == result.charts and result.errors == ""
    assert result.ok and result.screenshot is not None and result.screenshot.stat().st_size > 10_000


@pytest.mark.skipif(find_browser() is None, reason="needs Chromium (Debian package `chromium`)")
def test_render_reports_script_errors(tmp_path: Path) -> None:
    """The check can fail: a page whose script throws is reported, not passed."""
    broken = tmp_path / "broken.html"
    page = (tmp_path / "ok.html")
    from fmnist.page_script import PAGE_JS

    page.write_text(f"<html><head><script>{PAGE_JS}</script></head><body><pre id='js-errors'></pre></body></html>")
    broken.write_text(f"<html><head><script>{PAGE_JS}</script><script>undefinedFunction();</script></head>"
                      "<body><pre id='js-errors'></pre></body></html>")
    assert render(page).charts == 0 and not render(page).ok  # no charts at all is not a pass either
    assert "undefinedFunction" in render(broken).errors


def test_class_weight_trade_is_set_side_by_side(results_root: Path, tmp_path: Path) -> None:
    """Study B's Shirt x2: the page shows Shirt accuracy bought and overall accuracy paid, from the runs."""
    assert "Shirt x2 class weight" not in write_results(results_root, FULLISH, {}, repo=tmp_path).read_text()
    _run(results_root, "deep-shirt-weight", 1, 0.912, shirt_acc=0.80)
    _run(results_root, "deep-shirt-weight", 2, 0.910, shirt_acc=0.78)
    text = write_results(results_root, FULLISH, {}, repo=tmp_path).read_text()
    section = text.split("## Study B's Shirt x2 class weight")[1]
    assert "| deep | x1 | 91.60% | 75.00% | 25.00% | 2 |" in section
    assert "| deep | x2 | 91.10% | 79.00% | 21.00% | 2 |" in section


@pytest.mark.parametrize(("value", "shown"), [(None, "—"), (0.017, "< 1 s"), (36.4, "36 s"), (218.3, "3.6 min")])
def test_durations_read_as_measured(value: float | None, shown: str) -> None:
    assert _seconds(value) == shown


def test_robustness_table_reads_each_ensemble_and_sets_the_anchors_beside(results_root: Path, tmp_path: Path) -> None:
    """Issue 17: members' means next to the ensemble's figures, all from ensemble.json; anchors below."""
    assert "## Robustness" not in write_results(results_root, FULLISH, {}, repo=tmp_path).read_text()
    folder = results_root / "robustness" / "deep"
    folder.mkdir(parents=True)
    members = [{"name": f"deep-s{s}_v0", "accuracy": a, "nll": n, "ece": 0.08} for s, a, n in ((1, 0.91, 0.30),
                                                                                               (2, 0.93, 0.32))]
    (folder / "ensemble.json").write_text(json.dumps({
        "name": "deepx2", "members": members, "seeds": ["deep-s1", "deep-s2"],
        "ensemble": {"name": "deepx2", "accuracy": 0.925, "nll": 0.29, "ece": 0.09},
        "calibration": {"temperature": 0.61, "test": {"after": {"nll": 0.221, "ece": 0.012}}},
        "robustness": {"deepx2": {"mean_accuracy": 0.45}, "deep-s1_v0": {"mean_accuracy": 0.43},
                       "deep-s2_v0": {"mean_accuracy": 0.47}},
        "ood": {"deepx2": {"noise": {"score": "energy", "auroc": 0.981}}},
        "ood_auroc": {"deepx2": {"mnist msp": 0.89, "mnist energy": 0.86, "mnist mahalanobis": 0.972}}}))
    text = write_results(results_root, FULLISH, {}, repo=tmp_path).read_text()
    section = text.split("## Robustness")[1]
    assert ("| deepx2 | 2 | 92.00% → 92.50% | 0.310 → 0.290 → 0.221 (T 0.61) | 0.090 → 0.012 | 45.00% → 45.00% | "
            "0.890 / 0.860 / 0.972 | 0.981 (energy) |") in section
    assert "| anchor: LeNet-5 x10 ensemble (uncertainty-baselines) | 10 | 93.20% | 0.200 | 0.010 |" in section
    assert "| anchor: DUQ (van Amersfoort et al. 2020) | 1 | — | — | — | — | 0.955 | — |" in section
    assert "Most robust by mean accuracy over the 16 corruptions: deep-s2_v0 (47.00%)." in section
    assert "anchor: LeNet-5 x10 ensemble" in (tmp_path / "reports" / "t" / "index.html").read_text()
