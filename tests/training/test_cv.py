"""K-fold driver: fresh models per fold, results files, --fold and resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from filelock import FileLock

from fmnist.commands.options.train import parse_shorthand
from fmnist.commands.shims import train_py as main
from fmnist.errors import FmnistError
from fmnist.training.api import resolve_config
from fmnist.training.cv import LOCK_FILE, aggregate, run_cv

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def cv_args(data_dir: str, logdir: Path, *extra: str) -> list[str]:
    return ["--model", "scratch", "--folds", "2", "--epochs", "1", "--logdir", str(logdir), "--data.data_dir", data_dir,
            "--data.batch_size", "16", "--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "2",
            "--trainer.limit_test_batches", "2", *QUIET, *extra]


def test_two_fold_cv_end_to_end(synthetic_data_dir: str, tmp_path: Path) -> None:
    assert main(cv_args(synthetic_data_dir, tmp_path)) == 0
    cv_dir = tmp_path / "scratch-cv"
    summary = json.loads((cv_dir / "cv_results.json").read_text())
    assert [row["fold"] for row in summary["folds"]] == [0, 1]
    folds = [json.loads((cv_dir / f"fold_{k}" / "metrics.json").read_text()) for k in (0, 1)]
    # the two held-out halves partition the training images
    assert folds[0]["n_val"] + folds[1]["n_val"] == folds[0]["n_train"] + folds[0]["n_val"]
    assert folds[0]["n_folds"] == 2 and [f["fold"] for f in folds] == [0, 1]
    # fold 1 starts from fresh weights: neither fold 0's trained ones nor its initial ones
    assert folds[1]["initial_weight_fingerprint"] != folds[0]["final_weight_fingerprint"]
    assert folds[1]["initial_weight_fingerprint"] != folds[0]["initial_weight_fingerprint"]
    accs = [f["test_acc"] for f in folds]
    assert summary["aggregate"]["test_acc"]["mean"] == pytest.approx(sum(accs) / 2)
    with (cv_dir / "cv_results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["fold"] for r in rows] == ["0", "1", "mean", "std"]
    assert (cv_dir / "fold_0" / "checkpoints" / "best.ckpt").is_file()
    assert list((cv_dir / "fold_1").glob("events.out.tfevents.*"))


def test_single_fold_then_resume_skips_finished_folds(synthetic_data_dir: str, tmp_path: Path) -> None:
    assert main(cv_args(synthetic_data_dir, tmp_path, "--fold", "1")) == 0
    cv_dir = tmp_path / "scratch-cv"
    assert not (cv_dir / "fold_0").exists()
    assert json.loads((cv_dir / "cv_results.json").read_text())["aggregate"]["folds_done"] == 1
    finished = (cv_dir / "fold_1" / "metrics.json").stat().st_mtime_ns
    (cv_dir / "fold_0").mkdir()  # an interrupted fold: folder without metrics.json
    (cv_dir / "fold_0" / "stale.txt").write_text("left over")
    assert main(cv_args(synthetic_data_dir, tmp_path)) == 0
    assert (cv_dir / "fold_1" / "metrics.json").stat().st_mtime_ns == finished  # skipped, not retrained
    assert not (cv_dir / "fold_0" / "stale.txt").exists()  # the interrupted fold restarted cleanly
    assert json.loads((cv_dir / "cv_results.json").read_text())["aggregate"]["folds_done"] == 2


def test_fold_out_of_range_is_clear(synthetic_data_dir: str, tmp_path: Path) -> None:
    options = parse_shorthand(cv_args(synthetic_data_dir, tmp_path, "--fold", "2"))
    cfg = resolve_config(options.model, overrides=options.overrides, logdir=options.logdir)
    with pytest.raises(FmnistError, match="--fold must be in 0..1"):
        run_cv(cfg, options.folds, options.fold)


def test_aggregate_mean_and_sample_std() -> None:
    rows = [{"val_acc": 0.9, "test_acc": 0.90, "test_macro_f1": 0.8}, {"val_acc": 0.8, "test_acc": 0.92,
                                                                        "test_macro_f1": 0.9}]
    agg = aggregate(rows, 3)
    assert agg["folds_done"] == 2 and agg["n_folds"] == 3
    assert agg["test_acc"]["mean"] == pytest.approx(0.91)
    assert agg["test_acc"]["std"] == pytest.approx(0.0141421356, rel=1e-6)


def test_rerun_with_other_settings_is_refused_not_mixed(synthetic_data_dir: str, tmp_path: Path, capsys) -> None:
    assert main(cv_args(synthetic_data_dir, tmp_path, "--fold", "0")) == 0
    # same folder, other epochs and fold count: the finished fold must not be counted as one of these
    assert main(cv_args(synthetic_data_dir, tmp_path, "--epochs", "2")) == 2
    err = capsys.readouterr().err
    assert "holds folds of other settings" in err and "trainer.max_epochs: 1 before, 2 now" in err
    assert main([*cv_args(synthetic_data_dir, tmp_path, "--fold", "0")[:3], "3",
                 *cv_args(synthetic_data_dir, tmp_path, "--fold", "0")[4:]]) == 2
    assert "n_folds: 2 before, 3 now" in capsys.readouterr().err
    assert not (tmp_path / "scratch-cv" / "fold_1").exists()


def test_a_second_cv_on_the_same_folder_is_refused_while_one_runs(synthetic_data_dir: str, tmp_path: Path,
                                                                   capsys) -> None:
    cv_dir = tmp_path / "scratch-cv"
    cv_dir.mkdir()
    with FileLock(cv_dir / LOCK_FILE):  # another process holds the folder
        assert main(cv_args(synthetic_data_dir, tmp_path)) == 2
    assert "another cross-validation is running" in capsys.readouterr().err
    assert not list(cv_dir.glob("fold_*"))  # nothing started, nothing deleted
