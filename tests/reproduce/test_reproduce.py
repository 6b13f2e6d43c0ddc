"""``python -m fmnist.reproduce``: runs pieces through the real CLI, skips/resumes them, writes the page."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from fmnist.errors import FmnistError
from fmnist.reproduce import BUDGETS, EXPERIMENTS, Budget, reproduce
from fmnist.reproduce.__main__ import cli_main
from fmnist.reproduce.run import _config_path, select
from fmnist.training.api import resolve_config

TINY = Budget("tiny", "TINY test budget: synthetic data, 1 epoch.", epochs=1, train_subset=None, seeds=(7,),
              cv_epochs=1, cv_patience=8, baseline_subset=200, results_md="RESULTS-tiny.md",
              report_dir="reports/tiny")


def test_every_piece_the_issue_lists_is_an_experiment() -> None:
    names = {e.name for e in EXPERIMENTS}
    for model in ("resnet", "cnn", "scratch", "deep", "cnn1", "lenet5", "transfer", "resnet18", "vggbn"):
        assert model in names
    assert {"resnet18-finetune", "resnet18-scratch"} <= names  # issue 20: the ResNet18 experiment three ways
    assert {"scratch-sgd", "deep-no-bn-dropout", "cv-scratch", "cv-deep", "mnist-cross", "gradcam"} <= names
    assert "robustness" in names  # issue 17: the robustness table of the results page
    assert {f"baseline-{b}" for b in ("logreg", "svm", "rf", "knn", "mlp")} <= names
    assert [e.name for e in select(["baselines"])] == [f"baseline-{b}" for b in ("logreg", "svm", "rf", "knn", "mlp")]
    assert BUDGETS["quick"].train_subset and BUDGETS["full"].train_subset is None
    assert len(BUDGETS["full"].seeds) == 3


def test_unknown_experiment_is_one_clear_sentence() -> None:
    with pytest.raises(FmnistError, match="--only 'vgg' is not an experiment; choose from: resnet, cnn"):
        select(["vgg"])


@pytest.mark.parametrize("argv, message", [
    (["--only", "nope"], "--only 'nope' is not an experiment"),
    (["--budget", "huge"], "--budget must be one of quick, full, got 'huge'."),
    (["--report-only", "--root", "/nonexistent/fmnist-runs"], "nothing to report"),
])
def test_cli_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "cv-deep" in out and "QUICK BUDGET" in out and "FULL BUDGET" in out


def _mtime(path: Path) -> float:
    return path.stat().st_mtime_ns


def test_end_to_end_then_skips_finished_pieces(synthetic_data_dir: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # git provenance and relative outputs stay inside the test folder
    root = tmp_path / "runs"
    only = ["scratch", "cv-scratch", "baseline-logreg", "mnist-cross", "gradcam"]
    md = reproduce(TINY, only=only, root=root, data_dir=synthetic_data_dir, repo=tmp_path, log=lambda _: None)
    assert md == tmp_path / "RESULTS-tiny.md"
    text = md.read_text()
    run = json.loads((root / "scratch-s7" / "version_0" / "metrics.json").read_text())
    assert run["epochs"] == 1 and run["seed"] == 7
    assert f"{100 * run['test_acc']:.2f}%" in text  # the run's own number, not a typed one
    assert "TINY test budget" in text
    assert "| Study B: deep (= CNN-3), BatchNorm + dropout | — | 0 |" in text  # not run: shown as missing
    assert "Not run under this budget: it trains 1 seed per model" in text.split("## Robustness")[1]
    cv = json.loads((root / "cv-scratch-cv" / "cv_results.json").read_text())
    assert cv["aggregate"]["folds_done"] == 3 and "## 3-fold cross-validation" in text
    assert "## scikit-learn baselines" in text and "| logreg |" in text
    assert "| scratch |" in text.split("## Cross-dataset")[1]  # scratch scored on (synthetic) MNIST
    assert (tmp_path / "docs" / "results" / "tiny" / "gradcam_scratch.png").is_file()
    assert "docs/results/tiny/gradcam_scratch.png" in text
    page = (tmp_path / "reports" / "tiny" / "index.html").read_text()
    assert page.count('class="plotly-graph-div"') >= 3 and "data:image/png;base64," in page
    check = json.loads((root / "gradcam" / "scratch-explain-check" / "explain_check.json").read_text())
    assert check["model"] == "scratch" and "<section class='explain-check'>" in page  # the maps' checks, on the page
    timings = json.loads((root / "results" / "timings.json").read_text())
    assert set(only) <= set(timings) and timings["scratch"]["seconds"] > 0

    # Rerun: every finished piece is skipped (files untouched), the page is rewritten.
    metrics = root / "scratch-s7" / "version_0" / "metrics.json"
    before = (_mtime(metrics), _mtime(root / "evaluation" / "baseline-logreg" / "metrics.json"))
    reproduce(TINY, only=only, root=root, data_dir=synthetic_data_dir, repo=tmp_path, log=lambda _: None)
    assert (_mtime(metrics), _mtime(root / "evaluation" / "baseline-logreg" / "metrics.json")) == before

    # A run trained again (its folder moved away): its report, MNIST score and Grad-CAM are made again, not kept.
    products = [root / "evaluation" / "scratch-s7" / "metrics.json",
                root / "evaluation" / "scratch-s7_mnist" / "metrics.json", root / "gradcam" / "scratch.png"]
    shutil.rmtree(root / "scratch-s7")
    reproduce(TINY, only=only, root=root, data_dir=synthetic_data_dir, repo=tmp_path, report=False,
              log=lambda _: None)
    assert all(_mtime(product) >= _mtime(metrics) for product in products)


def test_interrupted_run_resumes_from_its_last_checkpoint(synthetic_data_dir: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "runs"
    reproduce(TINY, only=["deep"], root=root, data_dir=synthetic_data_dir, report=False, log=lambda _: None)
    run = root / "deep-s7" / "version_0"
    (run / "metrics.json").unlink()  # as if killed after the epoch's checkpoint, before testing
    longer = Budget(**{**TINY.__dict__, "epochs": 2})
    messages: list[str] = []
    reproduce(longer, only=["deep"], root=root, data_dir=synthetic_data_dir, report=False, log=messages.append)
    assert any("resuming from" in m for m in messages)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and len(list(root.glob("deep-s7/version_*"))) == 1


def test_only_the_first_process_evaluates_under_ddp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lightning re-runs the command once per GPU; the copies must not fit baselines or write pages."""
    monkeypatch.setenv("LOCAL_RANK", "1")
    md = reproduce(TINY, only=["baseline-logreg", "gradcam"], root=tmp_path / "runs", repo=tmp_path,
                   log=lambda _: None)
    assert md is None and not (tmp_path / "runs" / "evaluation").exists()
    assert not (tmp_path / "RESULTS-tiny.md").exists() and not (tmp_path / "runs" / "results").exists()


def test_timings_survive_a_parallel_invocation_and_are_backfilled_from_runs(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    run = root / "deep-s7" / "version_0"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"wall_seconds": 321.0, "git_commit": "abc1234",
                                                  "finished_at": "2026-11-24T23:00:00"}))
    (root / "evaluation" / "deep-s7").mkdir(parents=True)
    (root / "evaluation" / "deep-s7" / "metrics.json").write_text("{}")
    (root / "results").mkdir()
    (root / "results" / "timings.json").write_text(json.dumps({"vggbn": {"seconds": 99.0}}))  # another invocation's
    reproduce(TINY, only=["deep"], root=root, report=False, log=lambda _: None)
    timings = json.loads((root / "results" / "timings.json").read_text())
    assert timings["vggbn"] == {"seconds": 99.0}
    assert timings["deep"]["seconds"] == 321.0 and timings["deep"]["commit"] == "abc1234"
    assert timings["deep"]["command"] == "python -m fmnist.reproduce --budget tiny --only deep"


def test_page_counts_every_finished_seed_after_a_seeds_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--seeds 8`` runs (here: finds) seed 8 only; the page still averages every finished seed of the budget."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "runs"
    two = Budget(**{**TINY.__dict__, "seeds": (7, 8)})
    for seed, acc in ((7, 0.90), (8, 0.92)):
        run = root / f"deep-s{seed}" / "version_0"
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({"seed": seed, "test_acc": acc, "test_macro_f1": acc,
                                                      "epochs": 3, "best_epoch": 2, "wall_seconds": 10.0}))
        (root / "evaluation" / f"deep-s{seed}").mkdir(parents=True)
        (root / "evaluation" / f"deep-s{seed}" / "metrics.json").write_text("{}")
    md = reproduce(two, only=["deep"], seeds=[8], root=root, repo=tmp_path, log=lambda _: None)
    row = next(line for line in md.read_text().splitlines() if line.startswith("| Study B: deep (= CNN-3)"))
    assert "| 91.00% ± 1.41 | 2 |" in row, row


def test_a_piece_this_machine_cannot_run_is_skipped_and_named_on_the_page(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, the ImageNet rows are not trained (nor anything else under their name); the page says why."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "runs"
    calls: list[str] = []

    def refuse() -> str:
        calls.append("asked")
        return "weights unreachable (test)"

    pretrained = next(e for e in EXPERIMENTS if e.name == "resnet18")
    assert pretrained.unavailable is not None and pretrained.overrides["model.model_kwargs"]["pretrained"] is True
    monkeypatch.setattr("fmnist.reproduce.run.fit", lambda *a, **k: pytest.fail("must not train"))
    monkeypatch.setattr("fmnist.reproduce.run.EXPERIMENTS", tuple(
        dataclasses.replace(e, unavailable=refuse) if e is pretrained else e for e in EXPERIMENTS))
    md = reproduce(TINY, only=["resnet18"], root=root, repo=tmp_path, log=lambda _: None)
    assert calls == ["asked"]
    text = md.read_text()
    assert "### Not run on this machine" in text
    assert "- **Study B: ResNet18 32x32, ImageNet weights, frozen backbone**: weights unreachable (test)." in text
    assert not (root / "results" / "timings.json").exists()  # a piece that did not run has no time
    assert "not run on this machine: weights unreachable (test)" in (tmp_path / "reports" / "tiny" / "index.html").read_text()


def test_study_recipes_stay_as_named_ablations_of_ours() -> None:
    """Issue 20: `scratch` and `cnn` ship our recipe; the studies' own recipes stay runnable, unchanged, beside them."""
    def recipe(name: str) -> dict:
        exp = next(e for e in EXPERIMENTS if e.name == name)
        return resolve_config(exp.model, config=_config_path(exp), overrides=exp.overrides, optimizer=exp.optimizer)

    ours, study_b = recipe("scratch"), recipe("scratch-study-b")
    assert ours["model"]["model_name"] == study_b["model"]["model_name"] == "scratch"
    assert (study_b["data"]["augment"], study_b["model"]["class_weights"], study_b["trainer"]["max_epochs"]) == \
        (True, {6: 2.0}, 15)
    assert ours["data"]["augment"] is False and ours["model"]["label_smoothing"] == 0.1
    assert recipe("scratch-sgd")["data"]["augment"] is True  # Adam vs SGD stays study B's comparison
    assert recipe("cnn-study-a")["trainer"]["max_epochs"] == 10 and recipe("cnn-study-a")["model"]["model_name"] == "cnn"


def test_robustness_piece_evaluates_each_models_seeds_as_one_ensemble(synthetic_data_dir: str, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 17's table: two finished seeds of deep -> one calibrated ensemble on fashion-c and OOD; kept on rerun."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "runs"
    two = Budget(**{**TINY.__dict__, "seeds": (7, 8)})
    messages: list[str] = []
    md = reproduce(two, only=["deep", "robustness"], root=root, data_dir=synthetic_data_dir, repo=tmp_path,
                   log=messages.append)
    summary = json.loads((root / "robustness" / "deep" / "ensemble.json").read_text())
    assert summary["seeds"] == ["deep-s7", "deep-s8"] and len(summary["members"]) == 2
    assert summary["calibration"]["temperature"] > 0 and "deepx2" in summary["robustness"]
    assert {"mnist mahalanobis", "noise energy"} <= set(summary["ood_auroc"]["deepx2"])
    assert f"{100 * summary['ensemble']['accuracy']:.2f}%" in md.read_text().split("## Robustness")[1]
    assert any("robustness: vggbn has 0 finished seed(s) of 2" in m for m in messages)
    before = _mtime(root / "robustness" / "deep" / "ensemble.json")
    reproduce(two, only=["robustness"], root=root, data_dir=synthetic_data_dir, repo=tmp_path, report=False,
              log=lambda _: None)
    assert _mtime(root / "robustness" / "deep" / "ensemble.json") == before
