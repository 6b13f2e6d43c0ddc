"""The results pages: numbers come from ledger records only, stale records are set apart, notes only where ours
differs by > 1 point, GPU rows name their device, and the HTML draws its charts in headless Chromium without script
errors (Chromium is required on CI)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fmnist.ledger import make_record, write_record
from fmnist.reproduce import Budget
from fmnist.reproduce.collect import WHY, collect
from fmnist.reproduce.experiments import BY_NAME, Context
from fmnist.reproduce.html_check import find_browser, render
from fmnist.reproduce.page import write_results
from fmnist.reproduce.recipes import piece_recipe
from fmnist.reproduce.tables import seconds_text

FULLISH = Budget("fullish", "FULLISH test budget", epochs=None, train_subset=None, seeds=(1, 2), cv_epochs=30,
                 cv_patience=8, baseline_subset=None, results_md="RESULTS-t.md", report_dir="docs/results/t")
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
CI = __import__("os").environ.get("CI") == "true"
needs_chromium = pytest.mark.skipif(find_browser() is None and not CI,
                                    reason="needs Chromium (Debian package `chromium`); required on CI")


def _recipe(experiment: str, model: str | None = None, budget: Budget = FULLISH) -> dict[str, Any]:
    return piece_recipe(Context(budget, Path("."), 0, None, log=lambda _: None), BY_NAME[experiment], model)


def _provenance(commit: str = "abc1234", precision: str | None = None, device_name: str = "test box") -> dict:
    return {"git_commit": commit, "git_dirty": False, "machine": "test box", "device_name": device_name,
            "seconds": 300.0, **({"precision": precision} if precision else {})}


def _train(ledger: Path, name: str, seed: int, test_acc: float, *, val_acc: float = 0.9, epochs: int = 9,
           shirt_acc: float = 0.75, precision: str | None = None, commit: str = "abc1234", device: str = "cpu",
           recipe: dict | None = None, budget: Budget = FULLISH) -> None:
    report = {"class_names": CLASSES, "confusion_matrix": [[90 if i == j else 1 for j in range(10)] for i in range(10)],
              "per_class": [{"name": c, "f1": 0.9} for c in CLASSES]}
    metrics = {"test_acc": test_acc, "val_acc": val_acc, "test_macro_f1": test_acc - 0.01, "epochs": epochs,
               "best_epoch": epochs - 3, "seconds_per_epoch": 30.0, "wall_seconds": 300.0, "trainable_params": 94154,
               "per_class_acc": {**dict.fromkeys(CLASSES, test_acc), "Shirt": shirt_acc}}
    write_record(ledger, make_record(
        kind="train", budget=budget.name, experiment=name, item=f"s{seed}", device=device,
        recipe=recipe or _recipe(name, budget=budget), metrics=metrics,
        provenance=_provenance(commit, precision, "NVIDIA H100" if device == "gpu" else "test box"),
        seed=seed, model=BY_NAME[name].model, report=report, curves={"val_acc": [0.8, 0.9], "val_loss": [0.5, 0.4]}))


def _baseline(ledger: Path, name: str, accuracy: float) -> None:
    write_record(ledger, make_record(
        kind="baseline", budget=FULLISH.name, experiment=name, item="fit", device="cpu", recipe=_recipe(name),
        metrics={"accuracy": accuracy, "macro_f1": accuracy, "n_train": 51000, "fit_seconds": 12.5,
                 "predict_seconds": 3.0}, provenance=_provenance(), model=BY_NAME[name].model))


@pytest.fixture()
def ledger(tmp_path: Path) -> Path:
    ledger = tmp_path / "results"
    _train(ledger, "deep", 1, 0.915)
    _train(ledger, "deep", 2, 0.917)
    _train(ledger, "transfer", 1, 0.80)  # far below study B's 86.9%: needs its sentence
    _train(ledger, "deep-no-bn-dropout", 1, 0.70, val_acc=0.885)  # the study's ablation figure is a validation one
    _baseline(ledger, "baseline-svm", 0.8985)
    return ledger


def _rows(ledger: Path, budget: Budget = FULLISH) -> dict[str, dict]:
    return {r["name"]: r for r in collect(ledger, budget)["rows"] if r["device"] == "cpu"}


def test_numbers_come_from_the_records_and_notes_only_beyond_one_point(ledger: Path) -> None:
    rows = _rows(ledger)
    deep = rows["deep"]
    assert deep["n"] == 2 and deep["mean"] == pytest.approx(0.916) and deep["std"] == pytest.approx(0.001414, abs=1e-5)
    assert "why" not in deep  # 91.6% vs study B's 91.3%: within a point
    assert rows["transfer"]["why"] == WHY["transfer"]
    assert rows["deep-no-bn-dropout"]["mean"] == 0.885 and "why" not in rows["deep-no-bn-dropout"]
    assert rows["baseline-svm"]["fit_seconds"] == 12.5 and rows["baseline-svm"]["n_train"] == 51000
    assert rows["resnet"].get("mean") is None and rows["resnet"]["n"] == 0


def test_stale_records_are_counted_and_never_averaged_with_current_ones(ledger: Path, tmp_path: Path) -> None:
    old = {**_recipe("deep"), "model.lr": 0.5}  # a recipe that is not today's configs/deep.yaml
    _train(ledger, "deep", 3, 0.10, recipe=old, commit="0ld0ld0")
    data = collect(ledger, FULLISH)
    deep = next(r for r in data["rows"] if r["name"] == "deep")
    assert deep["n"] == 2 and deep["mean"] == pytest.approx(0.916)  # the stale 10% is not in the mean
    assert data["stale"] == [{"experiment": "deep", "item": "s3", "device": "cpu", "commit": "0ld0ld0"}]
    text = write_results(ledger, FULLISH, repo=tmp_path).read_text()
    assert "1 record(s) made with an older recipe are stale and not shown: deep s3 (cpu, 0ld0ld0)" in text


def test_a_row_lists_every_commit_its_seeds_ran_at(ledger: Path) -> None:
    _train(ledger, "resnet", 1, 0.91, commit="1111111")
    _train(ledger, "resnet", 2, 0.92, commit="2222222")
    assert _rows(ledger)["resnet"]["commits"] == ["1111111", "2222222"]


def test_a_gpu_machines_records_are_rows_of_their_own_naming_the_device(ledger: Path, tmp_path: Path) -> None:
    _train(ledger, "deep", 1, 0.93, device="gpu")
    rows = collect(ledger, FULLISH)["rows"]
    cpu = next(r for r in rows if r["name"] == "deep" and r["device"] == "cpu")
    gpu = next(r for r in rows if r["name"] == "deep" and r["device"] == "gpu")
    assert (cpu["n"], gpu["n"], gpu["mean"]) == (2, 1, 0.93)
    assert not any(r["device"] == "gpu" and r["name"] == "resnet" for r in rows)  # only where it made records
    text = write_results(ledger, FULLISH, repo=tmp_path).read_text()
    assert "| Study B: deep (= CNN-3), BatchNorm + dropout [NVIDIA H100] | 93.00% | 1 |" in text


def test_quick_budget_notes_say_it_is_the_budget(tmp_path: Path) -> None:
    quick = Budget(**{**FULLISH.__dict__, "name": "quick", "train_subset": 10000, "epochs": 3,
                      "baseline_subset": 20000})
    ledger = tmp_path / "results"
    _train(ledger, "transfer", 1, 0.80, budget=quick)
    write_record(ledger, make_record(
        kind="baseline", budget="quick", experiment="baseline-svm", item="fit", device="cpu",
        recipe=_recipe("baseline-svm", budget=quick), metrics={"accuracy": 0.85, "macro_f1": 0.85},
        provenance=_provenance()))
    rows = _rows(ledger, quick)
    assert rows["transfer"]["why"].startswith("Quick budget (10,000 training images, 3 epochs)")
    assert rows["baseline-svm"]["why"].startswith("Quick budget: fitted on 20,000 of the 51,000")


def test_written_page_and_markdown(ledger: Path, tmp_path: Path) -> None:
    text = write_results(ledger, FULLISH, repo=tmp_path).read_text()
    assert "91.60% ± 0.14" in text and "`abc1234`" in text and "5 current record(s)" in text
    assert "**Study B: transfer from MNIST (frozen base)** (80.00% vs 86.90%)" in text
    assert "| svm | 89.85% |" in text and "| 51,000 | 12 s |" in text
    page = tmp_path / "docs" / "results" / "t" / "index.html"
    assert page.is_file() and "js-errors" in page.read_text()
    assert oct(page.stat().st_mode & 0o777) != oct(0o600)  # readable like any file the user writes


def test_page_says_which_precision_the_cnns_trained_in(tmp_path: Path) -> None:
    ledger = tmp_path / "results"
    _train(ledger, "deep", 1, 0.915, precision="bf16-mixed")
    _train(ledger, "deep", 2, 0.917, precision="bf16-mixed")
    _train(ledger, "resnet", 1, 0.91, precision="32-true")
    text = write_results(ledger, FULLISH, repo=tmp_path).read_text()
    assert "; CNN training precision: 32-true, bf16-mixed" in text
    assert "CNN training precision: 32-true, bf16-mixed" in (tmp_path / "docs/results/t/index.html").read_text()


def test_records_without_precision_claim_none(ledger: Path, tmp_path: Path) -> None:
    assert "precision:" not in write_results(ledger, FULLISH, repo=tmp_path).read_text()


@needs_chromium
def test_page_draws_every_chart_in_headless_chromium(ledger: Path, tmp_path: Path) -> None:
    write_results(ledger, FULLISH, repo=tmp_path)
    result = render(tmp_path / "docs" / "results" / "t" / "index.html", screenshot=tmp_path / "shot.png")
    assert result.charts >= 3 and result.drawn == result.charts and result.errors == ""
    assert result.ok and result.screenshot is not None and result.screenshot.stat().st_size > 10_000


@needs_chromium
def test_render_reports_script_errors(tmp_path: Path) -> None:
    """The check can fail: a page whose script throws is reported, not passed."""
    from fmnist.page_script import PAGE_JS

    broken = tmp_path / "broken.html"
    page = tmp_path / "ok.html"
    page.write_text(f"<html><head><script>{PAGE_JS}</script></head><body><pre id='js-errors'></pre></body></html>")
    broken.write_text(f"<html><head><script>{PAGE_JS}</script><script>undefinedFunction();</script></head>"
                      "<body><pre id='js-errors'></pre></body></html>")
    assert render(page).charts == 0 and not render(page).ok  # no charts at all is not a pass either
    assert "undefinedFunction" in render(broken).errors


def test_class_weight_trade_is_set_side_by_side(ledger: Path, tmp_path: Path) -> None:
    """Study B's Shirt x2: the page shows Shirt accuracy bought and overall accuracy paid, from the records."""
    assert "Shirt x2 class weight" not in write_results(ledger, FULLISH, repo=tmp_path).read_text()
    _train(ledger, "deep-shirt-weight", 1, 0.912, shirt_acc=0.80)
    _train(ledger, "deep-shirt-weight", 2, 0.910, shirt_acc=0.78)
    text = write_results(ledger, FULLISH, repo=tmp_path).read_text()
    section = text.split("## Study B's Shirt x2 class weight")[1]
    assert "| deep | x1 | 91.60% | 75.00% | 25.00% | 2 |" in section
    assert "| deep | x2 | 91.10% | 79.00% | 21.00% | 2 |" in section


@pytest.mark.parametrize(("value", "shown"), [(None, "—"), (0.017, "< 1 s"), (36.4, "36 s"), (218.3, "3.6 min")])
def test_durations_read_as_measured(value: float | None, shown: str) -> None:
    assert seconds_text(value) == shown


def test_robustness_table_reads_each_ensemble_and_sets_the_anchors_beside(ledger: Path, tmp_path: Path) -> None:
    """Issue 17: members' means next to the ensemble's figures, all from the ensemble's record; anchors below."""
    assert "## Robustness" not in write_results(ledger, FULLISH, repo=tmp_path).read_text()
    members = [{"name": f"deep-s{s}_v0", "accuracy": a, "nll": n, "ece": 0.08} for s, a, n in ((1, 0.91, 0.30),
                                                                                               (2, 0.93, 0.32))]
    summary = {
        "name": "deepx2", "members": members, "seeds": ["deep-s1", "deep-s2"],
        "ensemble": {"name": "deepx2", "accuracy": 0.925, "nll": 0.29, "ece": 0.09},
        "calibration": {"temperature": 0.61, "test": {"after": {"nll": 0.221, "ece": 0.012}}},
        "robustness": {"deepx2": {"mean_accuracy": 0.45}, "deep-s1_v0": {"mean_accuracy": 0.43},
                       "deep-s2_v0": {"mean_accuracy": 0.47}},
        "ood": {"deepx2": {"noise": {"score": "energy", "auroc": 0.981}}},
        "ood_auroc": {"deepx2": {"mnist msp": 0.89, "mnist energy": 0.86, "mnist mahalanobis": 0.972}}}
    write_record(ledger, make_record(
        kind="robustness", budget=FULLISH.name, experiment="robustness", item="deep", device="cpu",
        recipe={**_recipe("robustness", "deep"), "seeds": [1, 2]}, metrics=summary, provenance=_provenance(),
        model="deep"))
    text = write_results(ledger, FULLISH, repo=tmp_path).read_text()
    section = text.split("## Robustness")[1]
    assert ("| deepx2 | 2 | 92.00% → 92.50% | 0.310 → 0.290 → 0.221 (T 0.61) | 0.090 → 0.012 | 45.00% → 45.00% | "
            "0.890 / 0.860 / 0.972 | 0.981 (energy) |") in section
    assert "| anchor: LeNet-5 x10 ensemble (uncertainty-baselines) | 10 | 93.20% | 0.200 | 0.010 |" in section
    assert "| anchor: DUQ (van Amersfoort et al. 2020) | 1 | — | — | — | — | 0.955 | — |" in section
    assert "Most robust by mean accuracy over the 16 corruptions: deep-s2_v0 (47.00%)." in section
    assert "anchor: LeNet-5 x10 ensemble" in (tmp_path / "docs" / "results" / "t" / "index.html").read_text()


def test_a_ledger_record_is_readable_json_without_nan(ledger: Path) -> None:
    path = ledger / "fullish" / "deep" / "s1.cpu.json"
    text = path.read_text()
    assert json.loads(text)["metrics"]["test_acc"] == 0.915 and "NaN" not in text


def test_a_new_option_at_its_default_leaves_records_current(ledger: Path) -> None:
    """Records written before an option existed (their recipe lacks it) stay current while it is at its default;
    a record that spells out a value other than today's default is stale."""
    older = {k: v for k, v in _recipe("resnet").items() if not k.startswith("model.tta_shift")}
    _train(ledger, "resnet", 1, 0.91, recipe=older)
    changed = {**_recipe("resnet"), "model.min_lr": 1e-5}  # the default was once 1e-5, say: another recipe today
    _train(ledger, "resnet", 2, 0.92, recipe=changed, commit="0ld0ld0")
    rows = _rows(ledger)
    assert rows["resnet"]["n"] == 1 and rows["resnet"]["values"] == [0.91]


def test_a_downstream_record_is_current_only_with_the_current_run_it_scored(ledger: Path) -> None:
    recipe = _recipe("mnist-cross", "deep")
    record = make_record(kind="cross", budget=FULLISH.name, experiment="mnist-cross", item="deep-s1", device="cpu",
                         recipe=recipe, metrics={"accuracy": 0.1}, provenance=_provenance(), model="deep", seed=1)
    write_record(ledger, record)
    assert [c["model"] for c in next(r for r in collect(ledger, FULLISH)["rows"] if r["kind"] == "cross")["cross"]] \
        == ["deep"]
    # The run it scored is replaced by one of another recipe: the MNIST score is stale with it.
    _train(ledger, "deep", 1, 0.90, recipe={**_recipe("deep"), "model.lr": 0.5})
    data = collect(ledger, FULLISH)
    assert {(s["experiment"], s["item"]) for s in data["stale"]} == {("deep", "s1"), ("mnist-cross", "deep-s1")}


def test_a_row_whose_seeds_trained_in_two_precisions_says_which(tmp_path: Path) -> None:
    ledger = tmp_path / "results"
    _train(ledger, "deep", 1, 0.915, precision="32-true")
    _train(ledger, "deep", 2, 0.917, precision="bf16-mixed")
    _train(ledger, "resnet", 1, 0.91, precision="bf16-mixed")
    _train(ledger, "resnet", 2, 0.912, precision="bf16-mixed")
    text = write_results(ledger, FULLISH, repo=tmp_path).read_text()
    deep = next(line for line in text.splitlines() if line.startswith("| Study B: deep"))
    resnet = next(line for line in text.splitlines() if line.startswith("| Study A: small ResNet"))
    assert "[32-true: s1; bf16-mixed: s2]" in deep
    assert "[" not in resnet.split("|")[2]  # one precision: nothing added


def test_the_page_says_which_pieces_scored_runs_trained_again(tmp_path: Path) -> None:
    ledger = tmp_path / "results"
    _train(ledger, "deep", 1, 0.915, precision="32-true")
    scored = [{"seed": 1, "precision": "bf16-mixed", "git_commit": "def5678", "checkpoint": None,
               "is_recorded_checkpoint": False}]
    for item, runs in (("deep-s1", scored), ("scratch-s1", [{**scored[0], "is_recorded_checkpoint": True}])):
        write_record(ledger, make_record(
            kind="cross", budget=FULLISH.name, experiment="mnist-cross", item=item, device="cpu",
            recipe=_recipe("mnist-cross", item.split("-")[0]), metrics={"accuracy": 0.1},
            provenance={**_provenance(), "scored_runs": runs}, model=item.split("-")[0], seed=1))
    text = write_results(ledger, FULLISH, repo=tmp_path).read_text()
    line = next(x for x in text.splitlines() if x.startswith("- Scored on runs trained again"))
    assert line.endswith(": mnist-cross of `deep` (s1: bf16-mixed at def5678).")  # scratch scored its own: not named
    assert "Scored on runs trained again" in (tmp_path / "docs/results/t/index.html").read_text()
