"""Sweeps end to end on the synthetic data: trials as run folders, pruning, parallel workers, resuming, the winner."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import ON_CI
from optuna.trial import TrialState

from fmnist.commands.shims import train_py as train_main
from fmnist.data.datamodule import ImageDataModule
from fmnist.errors import FmnistError
from fmnist.evaluation.predict import evaluate
from fmnist.reproduce.html_check import find_browser, render
from fmnist.sweep.final import best_trial
from fmnist.sweep.runner import make_sweep, open_study, run_sweep
from fmnist.sweep.space import load_sweep

ROOT = Path(__file__).resolve().parents[2]


def _study(result_or_sweep) -> optuna.Study:
    sweep = getattr(result_or_sweep, "sweep", result_or_sweep)
    return open_study(sweep, create=False)


def _states(study: optuna.Study) -> dict[int, TrialState]:
    return {t.number: t.state for t in study.get_trials(deepcopy=False)}


def test_three_trial_sweep_end_to_end(write_sweep, sweep_dirs, tmp_path: Path, monkeypatch) -> None:
    path = write_sweep(baseline={"model.model_kwargs.dropout": 0.5})
    sweep = make_sweep(load_sweep(path), **sweep_dirs)

    def no_test(self):  # the sweep must never evaluate the test set
        raise AssertionError("a sweep trial asked for the test set")

    monkeypatch.setattr(ImageDataModule, "test_dataloader", no_test)
    result = run_sweep(sweep)
    monkeypatch.undo()

    study = _study(result)
    trials = study.get_trials(deepcopy=False)
    assert [t.number for t in trials] == [0, 1, 2] and all(t.state == TrialState.COMPLETE for t in trials)
    assert trials[0].user_attrs["role"] == "baseline" and trials[0].params["model.lr"] == 0.003
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 3
    for t in trials:  # every trial is an ordinary run folder
        run = sweep_dirs["logdir"] / "t" / f"trial_{t.number}"
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["state"] == "complete" and metrics["test_acc"] is None and metrics["test_evaluated"] is False
        assert metrics["val_acc"] == pytest.approx(t.value) and metrics["params"] == t.params
        assert (run / "checkpoints" / "best.ckpt").is_file() and (run / "config.yaml").is_file()
        assert list(run.glob("events.out.tfevents.*"))
        assert yaml.safe_load((run / "config.yaml").read_text())["test_after_fit"] is False
    assert result.summary["counts"]["complete"] == 3 and result.summary["best"]["number"] == best_trial(study).number

    # the winner: a config train.py accepts, which trains and (now) tests
    best = yaml.safe_load(result.best_yaml.read_text())
    assert "test_after_fit" not in best and best["trainer"]["logger"]["init_args"]["name"] == "t-best"
    assert best["model"]["lr"] == best_trial(study).params["model.lr"]
    assert train_main(["fit", "--config", str(result.best_yaml)]) == 0
    tested = json.loads((sweep_dirs["logdir"] / "t-best" / "version_0" / "metrics.json").read_text())
    assert tested["test_acc"] is not None

    # report: a table row per trial and self-contained plotly charts
    page = result.report["html"].read_text()
    assert page.count("<tr>") == 4 and "Optimisation history" in page and "Parallel coordinates" in page
    assert "<script src" not in page.replace('"', "'").replace("script  ", "script ")  # plotly.js is inline
    assert "| 2 | complete |" in result.report["markdown"].read_text()
    assert find_browser() or not ON_CI, "Chromium is missing on CI, so the report's charts went unchecked"
    if find_browser():
        rendered = render(result.report["html"])
        assert rendered.ok, rendered
        assert rendered.charts == 5


def test_final_fit_trains_on_train_plus_val_and_tests_once_per_seed(write_sweep, sweep_dirs) -> None:
    sweep = make_sweep(load_sweep(write_sweep(trials=1, baseline={"model.model_kwargs.dropout": 0.5})), **sweep_dirs)
    result = run_sweep(sweep, final=True, seeds=[5, 6])
    final = result.final
    assert final["trial"] == 0 and [r["seed"] for r in final["runs"]] == [5, 6]
    assert all(r["test_acc"] is not None for r in final["runs"]) and final["test_acc"]["mean"] is not None
    assert all(r["n_train"] == 600 for r in final["runs"])  # 510 train + 90 validation images
    config = yaml.safe_load((Path(final["runs"][0]["run_dir"]) / "config.yaml").read_text())
    assert {"class_path": "fmnist.sweep.callbacks.TrainOnValidation"} in config["trainer"]["callbacks"]
    assert config["checkpoint"]["monitor"] is None and config["seed_everything"] == 5
    stamp = (Path(final["runs"][0]["run_dir"]) / "metrics.json").stat().st_mtime
    again = run_sweep(sweep, final=True, seeds=[5, 6])  # a seed already tested is not trained or tested again
    assert (Path(final["runs"][0]["run_dir"]) / "metrics.json").stat().st_mtime == stamp
    assert again.final["test_acc"] == final["test_acc"] and "Final fit of trial 0" in again.report["markdown"].read_text()


def test_pruning_stops_a_trial_with_an_absurd_learning_rate(write_sweep, sweep_dirs) -> None:
    path = write_sweep(base_changes={"trainer": {"max_epochs": 4, "limit_train_batches": 8}}, trials=2,
                       pruner={"median": {"n_startup_trials": 1, "n_warmup_steps": 0}},
                       space={"model.lr": {"log_uniform": [1.0e-4, 100.0]}},
                       enqueue=[{"model.lr": 0.003}, {"model.lr": 0.1}])  # 80 diverges at once: test_refusals
    result = run_sweep(make_sweep(load_sweep(path), **sweep_dirs))
    sane, absurd = _study(result).get_trials(deepcopy=False)
    assert sane.state == TrialState.COMPLETE and sane.user_attrs["epochs"] == 4
    assert absurd.state == TrialState.PRUNED and absurd.params["model.lr"] == 0.1
    assert len(absurd.intermediate_values) < 4 and absurd.user_attrs["epochs"] < 4
    assert absurd.intermediate_values[0] < sane.intermediate_values[0]
    metrics = json.loads((sweep_dirs["logdir"] / "t" / "trial_1" / "metrics.json").read_text())
    assert metrics["state"] == "pruned" and metrics["epochs"] == absurd.user_attrs["epochs"]
    assert "pruned after epoch" in result.report["markdown"].read_text()


@pytest.mark.slow  # the same two-worker guarantee runs by default through the CLI (test_cli_two_workers...) and on PostgreSQL
def test_two_workers_share_one_study_without_losing_or_duplicating_trials(write_sweep, sweep_dirs) -> None:
    sweep = make_sweep(load_sweep(write_sweep(trials=4)), **sweep_dirs)
    result = run_sweep(sweep, workers=2)
    trials = _study(result).get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["pid"] for t in trials}) == 2  # both processes trained
    assert sorted(p.name for p in (sweep_dirs["logdir"] / "t").iterdir()) == [f"trial_{n}" for n in range(4)]
    for t in trials:
        metrics = json.loads((Path(t.user_attrs["run_dir"]) / "metrics.json").read_text())
        assert metrics["trial"] == t.number and metrics["params"] == t.params
    assert result.summary["workers"] == 2
    again = run_sweep(sweep, workers=2)  # the budget is met: nothing more runs
    assert again.ran == 0 and len(_study(again).get_trials(deepcopy=False)) == 4


def _training(db: Path) -> set[int]:
    """Numbers of the RUNNING trials that have drawn their parameters (so are training)."""
    query = ("SELECT t.number FROM trials t JOIN trial_params p ON p.trial_id = t.trial_id "
             "WHERE t.state = 'RUNNING' GROUP BY t.number HAVING COUNT(*) = 3")
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as connection:
            return {n for (n,) in connection.execute(query)}
    except sqlite3.Error:  # not created yet
        return set()


def test_a_killed_sweep_resumes_keeping_finished_trials(write_sweep, sweep_dirs, tmp_path: Path) -> None:
    path = write_sweep(base_changes={"trainer": {"max_epochs": 6, "limit_train_batches": 8}})
    env = {**os.environ, "FMNIST_NO_DOWNLOAD": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "-m", "fmnist.sweep", "--config", str(path), "--out",
                             str(sweep_dirs["out_dir"]), "--logdir", str(sweep_dirs["logdir"])],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    db, deadline = sweep_dirs["out_dir"] / "study.db", time.monotonic() + 300
    while 1 not in _training(db):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "trial 1 never started"
        time.sleep(0.05)
    proc.kill()  # SIGKILL mid-trial: nothing gets to clean up
    proc.wait()
    proc.stderr.close()

    sweep = make_sweep(load_sweep(path), **sweep_dirs)
    before = {t.number: t for t in _study(sweep).get_trials()}
    assert before[0].state == TrialState.COMPLETE and before[1].state == TrialState.RUNNING
    result = run_sweep(sweep)
    after = {t.number: t for t in _study(result).get_trials()}
    assert after[0].datetime_complete == before[0].datetime_complete  # kept, not re-run
    assert after[1].state == TrialState.FAIL
    retry = next(t for t in after.values() if t.system_attrs.get("failed_trial") == 1)
    assert retry.state == TrialState.COMPLETE and retry.params == after[1].params
    assert sum(t.state == TrialState.COMPLETE for t in after.values()) == 3
    assert f"retried as #{retry.number}" in result.report["markdown"].read_text()


def test_ctrl_c_marks_the_trial_interrupted_and_the_rerun_retries_it(write_sweep, sweep_dirs) -> None:
    path = write_sweep(base_changes={"trainer": {"callbacks": [{"class_path": "sweep.sweep_helpers.InterruptIn",
                                                              "init_args": {"version": "trial_1"}}]}})
    sweep = make_sweep(load_sweep(path), **sweep_dirs)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_sweep(sweep)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning ignores further Ctrl-C once it shut down
    study = _study(sweep)
    assert _states(study) == {0: TrialState.COMPLETE, 1: TrialState.FAIL}
    assert study.trials[1].user_attrs["interrupted"] is True
    run_sweep(sweep)
    trials = _study(sweep).get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[2].system_attrs["failed_trial"] == 1 and trials[2].params == trials[1].params


def test_a_rerun_with_another_space_is_refused(write_sweep, sweep_dirs) -> None:
    sweep = make_sweep(load_sweep(write_sweep(trials=1)), **sweep_dirs)
    run_sweep(sweep)
    changed = load_sweep(write_sweep(trials=1, space={"model.lr": {"log_uniform": [1.0e-4, 1.0e-2]}}))
    with pytest.raises(FmnistError, match=r"study t in sqlite:///.*was started with another sweep config "
                                          r"\(space.data.batch_size: .* then, None now\); restore it"):
        run_sweep(make_sweep(changed, **sweep_dirs))


# -- the command line: --workers 2, --final-fit, --report-only ------------------------------------------------
@pytest.mark.slow  # two workers run by default on PostgreSQL, the final fit in test_final_fit_trains_on_train_plus_val_and_tests_once_per_seed
def test_cli_two_workers_and_a_final_fit_then_report_only(write_sweep, sweep_dirs, tmp_path: Path,
                                                          synthetic_data_dir: str) -> None:
    """``python -m fmnist.sweep`` as a user types it (a fresh process, cwd a scratch folder)."""
    path = write_sweep(trials=2)
    out, logdir = sweep_dirs["out_dir"], sweep_dirs["logdir"]
    command = [sys.executable, "-m", "fmnist.sweep", "--config", str(path), "--out", str(out), "--logdir", str(logdir)]
    env = {**os.environ, "FMNIST_NO_DOWNLOAD": "1", "PYTHONWARNINGS": "ignore"}
    run = subprocess.run([*command, "--workers", "2", "--final-fit", "--seeds", "5"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]

    trials = _study(make_sweep(load_sweep(path), **sweep_dirs)).get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == [0, 1] and all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["pid"] for t in trials}) == 2 and run.stdout.count("workers seen: 2") == 1
    # the winner, read from the trials' own metrics.json (highest validation accuracy), is what was refitted
    val_acc = {n: json.loads((logdir / "t" / f"trial_{n}" / "metrics.json").read_text())["val_acc"] for n in (0, 1)}
    best = max(val_acc, key=val_acc.get)
    final_dir = logdir / "t-final" / f"trial_{best}_seed_5"
    final = json.loads((final_dir / "metrics.json").read_text())
    assert final["n_train"] == 600 and final["seed"] == 5  # 510 training + 90 validation images
    # its test accuracy, scored again from its checkpoint by the evaluator on the 100 synthetic test images
    predictions = evaluate(final_dir, "fashion", "test", data_dir=synthetic_data_dir)
    assert len(predictions.labels) == 100
    accuracy = float((predictions.probs.argmax(axis=1) == predictions.labels).mean())
    assert final["test_acc"] == pytest.approx(accuracy, abs=1e-6)
    assert f"Final fit of trial {best} on train+val (2 epochs), tested once per seed" in run.stdout
    assert f"best config: {out / 'best.yaml'}" in run.stdout

    # --report-only: no trial and no fit runs; best.yaml and the report come back as they were (but the time)
    def written_now() -> dict[str, str]:
        return {name: re.sub(r"^Written \S+ \S+;", "Written;", (out / name).read_text(), flags=re.M)
                for name in ("best.yaml", "report.md", "trials.csv")}

    written = written_now()
    assert written["report.md"].count("\nWritten;") == 1
    stamps = {p: p.stat().st_mtime_ns for p in logdir.rglob("metrics.json")}
    for name in written:
        (out / name).unlink()
    again = subprocess.run([*command, "--report-only"], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert written_now() == written
    assert {p: p.stat().st_mtime_ns for p in logdir.rglob("metrics.json")} == stamps  # nothing trained or tested
    assert len(_study(make_sweep(load_sweep(path), **sweep_dirs)).get_trials(deepcopy=False)) == 2
    assert f"Final fit of trial {best} on train+val" in again.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["base.yaml", "sweep.yaml", "out", "lightning_logs"])
