"""``python -m fmnist.reproduce``: runs pieces through the real CLI, skips/resumes them, writes the page."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import statistics
from pathlib import Path

import pytest

from fmnist.errors import FmnistError
from fmnist.reproduce import BUDGETS, EXPERIMENTS, Budget, reproduce
from fmnist.reproduce.__main__ import cli_main
from fmnist.reproduce.page import WRITTEN_PREFIX
from fmnist.reproduce.recipes import _config_path
from fmnist.reproduce.run import select
from fmnist.training.api import resolve_config

TINY = Budget("tiny", "TINY test budget: synthetic data, 1 epoch.", epochs=1, train_subset=None, seeds=(7,),
              cv_epochs=1, cv_patience=8, baseline_subset=200, results_md="RESULTS-tiny.md",
              report_dir="docs/results/tiny")


def test_every_piece_the_issue_lists_is_an_experiment() -> None:
    names = {e.name for e in EXPERIMENTS}
    for model in ("resnet", "cnn", "scratch", "deep", "cnn1", "lenet5", "transfer", "resnet18", "vggbn"):
        assert model in names
    assert {"resnet18-finetune", "resnet18-scratch"} <= names  # issue 20: the ResNet18 experiment three ways
    assert {"scratch-sgd", "deep-no-bn-dropout", "cv-scratch", "cv-deep", "mnist-cross", "gradcam"} <= names
    assert {"explain", "photo", "photos"} <= names  # issue 29: explanation checks and the photos are pieces
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
    (["--report-only", "--ledger", "/nonexistent/fmnist-ledger"], "holds no records: nothing to report"),
])
def test_cli_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "cv-deep" in out and "QUICK BUDGET" in out and "FULL BUDGET" in out and "photos" in out


def _mtime(path: Path) -> float:
    return path.stat().st_mtime_ns


def _record(repo: Path, experiment: str, item: str) -> dict:
    return json.loads((repo / "results" / "tiny" / experiment / f"{item}.cpu.json").read_text())


def _without_written(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if WRITTEN_PREFIX not in line)


def test_end_to_end_records_every_piece_and_a_fresh_machine_resumes_from_the_ledger(
        synthetic_data_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # relative outputs stay inside the test folder
    root = tmp_path / "runs"
    only = ["scratch", "cv-scratch", "baseline-logreg", "mnist-cross", "gradcam", "explain"]
    messages: list[str] = []
    md = reproduce(TINY, only=only, root=root, data_dir=synthetic_data_dir, repo=tmp_path, log=messages.append)
    assert md == tmp_path / "RESULTS-tiny.md"
    # scratch's downstream pieces score it right after it trains, before the next experiment (cv-scratch) starts
    order = [next(i for i, m in enumerate(messages) if m.startswith(start)) for start in
             ("[tiny] mnist-cross of scratch", "[tiny] gradcam of scratch", "[tiny] explain of scratch",
              "[tiny] cv-scratch")]
    assert order == sorted(order)
    text = md.read_text()
    run = json.loads((root / "scratch-s7" / "version_0" / "metrics.json").read_text())
    record = _record(tmp_path, "scratch", "s7")
    assert record["metrics"]["test_acc"] == pytest.approx(run["test_acc"], rel=1e-5) and record["seed"] == 7
    assert record["metrics"]["epochs"] == run["epochs"] == 1
    assert record["report"]["confusion_matrix"] and len(record["report"]["per_class"]) == 10
    assert record["curves"]["val_acc"] and record["provenance"]["checkpoint"]["name"] == \
        "scratch-s7/version_0/checkpoints/best.ckpt"
    ckpt = root / "scratch-s7" / "version_0" / "checkpoints" / "best.ckpt"
    assert record["provenance"]["checkpoint"]["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert record["provenance"]["data_files"]["train_images"] == run["data_source"]["files"]["train_images"]["sha256"]
    assert f"{100 * record['metrics']['test_acc']:.2f}%" in text  # the record's own number, not a typed one
    assert "TINY test budget" in text
    assert "| Study B: deep (= CNN-3), BatchNorm + dropout | — | 0 |" in text  # no record: shown as missing
    assert "Not run under this budget: it trains 1 seed per model" in text.split("## Robustness")[1]
    cv = _record(tmp_path, "cv-scratch", "folds")
    assert len(cv["metrics"]["folds"]) == 3 and "## 3-fold cross-validation" in text
    assert "## scikit-learn baselines" in text and "| logreg |" in text
    assert "| scratch |" in text.split("## Cross-dataset")[1]  # scratch scored on (synthetic) MNIST
    gallery = _record(tmp_path, "gradcam", "scratch-s7")["figure"]
    assert gallery["path"] == "docs/results/tiny/gradcam_scratch.png"
    assert gallery["sha256"] == hashlib.sha256((tmp_path / gallery["path"]).read_bytes()).hexdigest()
    assert f"![gradcam_scratch]({gallery['path']})" in text
    scored = _record(tmp_path, "gradcam", "scratch-s7")["provenance"]["scored_runs"]
    assert scored == [{"seed": 7, "precision": run["precision"], "git_commit": run["git_commit"],
                       "checkpoint": record["provenance"]["checkpoint"], "is_recorded_checkpoint": True}]
    check = _record(tmp_path, "explain", "scratch-s7")
    assert check["metrics"]["model"] == "scratch" and check["metrics"]["n"] == 100  # the synthetic test split
    assert all((tmp_path / path).is_file() for path in check["figures"].values())
    page = (tmp_path / "docs" / "results" / "tiny" / "index.html").read_text()
    assert page.count('class="plotly-graph-div"') >= 3 and "<section class='explain-check'>" in page
    assert "src='../plotly.min.js'" in page and (tmp_path / "docs" / "results" / "plotly.min.js").is_file()
    assert "src='gradcam_scratch.png'" in page  # committed figures are linked, not embedded

    # Rerun: every piece in the ledger is skipped (records untouched), the page is rewritten.
    records = sorted((tmp_path / "results" / "tiny").glob("*/*.json"))
    before = [_mtime(path) for path in records]
    reproduce(TINY, only=only, root=root, data_dir=synthetic_data_dir, repo=tmp_path, log=lambda _: None)
    assert [_mtime(path) for path in records] == before

    # A piece that scores a checkpoint other than the one the training record names says so in its record.
    tampered = tmp_path / "results" / "tiny" / "scratch" / "s7.cpu.json"
    saved = tampered.read_text()
    tampered.write_text(saved.replace(record["provenance"]["checkpoint"]["sha256"], "0" * 64))
    (tmp_path / "results" / "tiny" / "gradcam" / "scratch-s7.cpu.json").unlink()
    reproduce(TINY, only=["gradcam"], root=root, data_dir=synthetic_data_dir, repo=tmp_path, report=False,
              log=lambda _: None)
    assert _record(tmp_path, "gradcam", "scratch-s7")["provenance"]["scored_runs"][0]["is_recorded_checkpoint"] is False
    tampered.write_text(saved)
    (tmp_path / "results" / "tiny" / "gradcam" / "scratch-s7.cpu.json").unlink()
    text = reproduce(TINY, only=["gradcam"], root=root, data_dir=synthetic_data_dir, repo=tmp_path,
                     log=lambda _: None).read_text()  # the page as its records now are (the gallery's seconds)
    records = sorted((tmp_path / "results" / "tiny").glob("*/*.json"))
    before = [_mtime(path) for path in records]

    # A fresh machine: no run folder at all. Nothing is trained again, the page is the same from the ledger alone.
    shutil.rmtree(root)
    monkeypatch.setattr("fmnist.reproduce.run.run_config", lambda *a, **k: pytest.fail("must not train"))
    md = reproduce(TINY, only=only, root=root, data_dir=synthetic_data_dir, repo=tmp_path, log=lambda _: None)
    assert _without_written(md.read_text()) == _without_written(text)
    assert [_mtime(path) for path in records] == before


@pytest.mark.slow  # trains twice; staleness itself is tested by default without training (test_results_page, test_recipe)
def test_a_record_of_another_recipe_is_stale_and_run_again(synthetic_data_dir: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "runs"
    reproduce(TINY, only=["lenet5"], root=root, data_dir=synthetic_data_dir, repo=tmp_path, log=lambda _: None)
    first = _record(tmp_path, "lenet5", "s7")
    longer = Budget(**{**TINY.__dict__, "epochs": 2})  # another recipe: two epochs
    page = reproduce(longer, only=["deep"], root=root, data_dir=synthetic_data_dir, repo=tmp_path, report=True,
                     log=lambda _: None).read_text()
    assert "1 record(s) made with an older recipe are stale and not shown: lenet5 s7" in page
    assert "| LeNet-5 | — | 0 |" in page
    messages: list[str] = []
    reproduce(longer, only=["lenet5"], root=root, data_dir=synthetic_data_dir, repo=tmp_path, log=messages.append)
    assert any("its record is of another recipe (stale); running it again" in m for m in messages)
    assert any("was made with another recipe; moved to" in m for m in messages)
    second = _record(tmp_path, "lenet5", "s7")
    assert second["metrics"]["epochs"] == 2 and second["recipe_fingerprint"] != first["recipe_fingerprint"]


def test_interrupted_run_resumes_from_its_last_checkpoint(synthetic_data_dir: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "runs"
    reproduce(TINY, only=["deep"], root=root, data_dir=synthetic_data_dir, report=False, repo=tmp_path,
              log=lambda _: None)
    run = root / "deep-s7" / "version_0"
    (run / "metrics.json").unlink()  # as if killed after the epoch's checkpoint, before testing
    (tmp_path / "results" / "tiny" / "deep" / "s7.cpu.json").unlink()
    messages: list[str] = []
    reproduce(TINY, only=["deep"], root=root, data_dir=synthetic_data_dir, report=False, repo=tmp_path,
              log=messages.append)
    assert any("resuming from" in m for m in messages)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["resumes"] == 1 and len(list(root.glob("deep-s7/version_*"))) == 1
    assert _record(tmp_path, "deep", "s7")["metrics"]["resumes"] == 1


def test_only_the_first_process_evaluates_under_ddp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lightning re-runs the command once per GPU; the copies must not fit baselines, record or write pages."""
    monkeypatch.setenv("LOCAL_RANK", "1")
    md = reproduce(TINY, only=["baseline-logreg", "gradcam"], root=tmp_path / "runs", repo=tmp_path,
                   log=lambda _: None)
    assert md is None and not (tmp_path / "runs" / "evaluation").exists()
    assert not (tmp_path / "RESULTS-tiny.md").exists() and not (tmp_path / "results").exists()


def test_page_counts_every_current_seed_after_a_seeds_run(synthetic_data_dir: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """``--seeds 8`` runs seed 8 only; the page still averages every current seed of the budget in the ledger."""
    monkeypatch.chdir(tmp_path)
    two = Budget(**{**TINY.__dict__, "seeds": (7, 8)})
    root = tmp_path / "runs"
    reproduce(two, only=["lenet5"], seeds=[7], root=root, data_dir=synthetic_data_dir, repo=tmp_path,
              report=False, log=lambda _: None)
    md = reproduce(two, only=["lenet5"], seeds=[8], root=root, data_dir=synthetic_data_dir, repo=tmp_path,
                   log=lambda _: None)
    accs = [_record(tmp_path, "lenet5", f"s{seed}")["metrics"]["test_acc"] for seed in (7, 8)]
    row = next(line for line in md.read_text().splitlines() if line.startswith("| LeNet-5 |"))
    mean, std = statistics.fmean(accs), statistics.stdev(accs)
    assert f"| {100 * mean:.2f}% ± {100 * std:.2f} | 2 |" in row, row


def test_a_piece_this_machine_cannot_run_is_recorded_with_its_reason_and_named_on_the_page(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, the ImageNet rows are not trained (nor anything else under their name); the page says why."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "runs"
    calls: list[str | None] = []

    def refuse(data_dir: str | None) -> str:
        calls.append(data_dir)
        return "weights unreachable (test)"

    pretrained = next(e for e in EXPERIMENTS if e.name == "resnet18")
    assert pretrained.unavailable is not None and pretrained.overrides["model.model_kwargs"]["pretrained"] is True
    monkeypatch.setattr("fmnist.reproduce.run.run_config", lambda *a, **k: pytest.fail("must not train"))
    monkeypatch.setattr("fmnist.reproduce.run.EXPERIMENTS", tuple(
        dataclasses.replace(e, unavailable=refuse) if e is pretrained else e for e in EXPERIMENTS))
    md = reproduce(TINY, only=["resnet18"], root=root, repo=tmp_path, log=lambda _: None)
    assert calls == [None]
    record = _record(tmp_path, "resnet18", "not-run")
    assert record["metrics"] == {"reason": "weights unreachable (test)", "status": "not run"}
    text = md.read_text()
    assert "### Not run on this machine" in text
    assert "- **Study B: ResNet18 32x32, ImageNet weights, frozen backbone**: weights unreachable (test)." in text
    page = (tmp_path / "docs" / "results" / "tiny" / "index.html").read_text()
    assert "not run on this machine: weights unreachable (test)" in page


def test_study_recipes_stay_as_named_ablations_of_ours() -> None:
    """Issue 20: `scratch` and `cnn` ship our recipe; the studies' own recipes stay runnable, unchanged, beside them."""
    def recipe(name: str) -> dict:
        exp = next(e for e in EXPERIMENTS if e.name == name)
        return resolve_config(exp.model, config=_config_path(exp), overrides=exp.overrides, optimizer=exp.optimizer)

    ours, study_b = recipe("scratch"), recipe("scratch-study-b")
    assert ours["model"]["model_name"] == study_b["model"]["model_name"] == "scratch"
    assert (study_b["data"]["augment"]["enabled"], study_b["model"]["class_weights"], study_b["trainer"]["max_epochs"]) == \
        (True, {6: 2.0}, 15)
    assert ours["data"]["augment"]["enabled"] is False and ours["model"]["label_smoothing"] == 0.1
    assert recipe("scratch-sgd")["data"]["augment"]["enabled"] is True  # Adam vs SGD stays study B's comparison
    assert recipe("cnn-study-a")["trainer"]["max_epochs"] == 10 and recipe("cnn-study-a")["model"]["model_name"] == "cnn"


@pytest.mark.slow  # trains two seeds; the ensemble, OOD and calibration it runs are tested by default in tests/evaluation
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
    record = _record(tmp_path, "robustness", "deep")
    assert record["recipe"]["seeds"] == [7, 8] and record["metrics"]["seeds"] == ["deep-s7", "deep-s8"]
    assert record["metrics"]["ensemble"]["accuracy"] == pytest.approx(summary["ensemble"]["accuracy"], rel=1e-5)
    assert summary["calibration"]["temperature"] > 0 and "deepx2" in summary["robustness"]
    assert {"mnist mahalanobis", "noise energy"} <= set(record["metrics"]["ood_auroc"]["deepx2"])
    assert f"{100 * record['metrics']['ensemble']['accuracy']:.2f}%" in md.read_text().split("## Robustness")[1]
    assert any("robustness: `vggbn` has not finished seed(s) 7, 8; run `--only vggbn` first. Skipped." in m
               for m in messages)
    before = _mtime(tmp_path / "results" / "tiny" / "robustness" / "deep.cpu.json")
    reproduce(two, only=["robustness"], root=root, data_dir=synthetic_data_dir, repo=tmp_path, report=False,
              log=lambda _: None)
    assert _mtime(tmp_path / "results" / "tiny" / "robustness" / "deep.cpu.json") == before
