"""Every user mistake of the hardening issue: one clear sentence, a non-zero exit, no traceback, nothing left behind.

Each case builds its inputs in a temporary folder, runs ``train.py`` or ``evaluate.py`` in-process from inside that
folder, and checks the exit code, that exactly one ``error:`` line names the problem, that no traceback was
printed and that no file appeared besides the inputs (no report, no run folder, no ``checkpoints/``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from fmnist.commands.shims import evaluate_py as evaluate_main
from fmnist.commands.shims import train_py as train_main
from fmnist.errors import FmnistError

ROOT = Path(__file__).resolve().parent.parent
CONFIG = str(ROOT / "configs" / "deep.yaml")
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@dataclass
class Inputs:
    """What a case may use: its own folder, the synthetic data root and a real trained checkpoint."""

    folder: Path
    data: str
    checkpoint: Path

    def tampered(self, change: Callable[[dict], None], name: str) -> Path:
        """A copy of the checkpoint with ``change`` applied (still a plain weights-only file)."""
        raw = torch.load(self.checkpoint, weights_only=True)
        change(raw)
        path = self.folder / name
        torch.save(raw, path)
        return path


def _without_model_name(raw: dict) -> None:
    raw["hyper_parameters"].pop("model_name")


def _other_architecture(raw: dict) -> None:
    raw["hyper_parameters"]["model_name"] = "deep"  # cnn's weights under deep's name


def _five_classes(raw: dict) -> None:
    raw["hyper_parameters"]["num_classes"] = 5
    raw["state_dict"] = {k: v[:5] if v.dim() and v.shape[0] == 10 else v for k, v in raw["state_dict"].items()}


def _renamed_weights(raw: dict) -> None:
    raw["state_dict"] = {f"{k}_old": v for k, v in raw["state_dict"].items()}


def _bad_header_data(inputs: Inputs) -> str:
    """A copy of the synthetic data whose test-images header claims 56x14 images (the same byte count)."""
    root = inputs.folder / "bad-data"
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for source in (Path(inputs.data) / "FashionMNIST" / "raw").iterdir():
        data = bytearray(source.read_bytes())
        if source.name.startswith("t10k-images"):
            data[8:16] = (56).to_bytes(4, "big") + (14).to_bytes(4, "big")
        (raw / source.name).write_bytes(bytes(data))
    return str(root)


def _nested_manifest(inputs: Inputs) -> str:
    path = inputs.folder / "nested.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    return str(path)


def _metrics_with_text_accuracy(inputs: Inputs) -> str:
    run = inputs.folder / "runs" / "deep" / "version_0"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"model": "deep", "test_acc": "high"}))
    return str(run)


TRAIN, EVALUATE = "train.py", "evaluate.py"
# (id, entry point, arguments built from the inputs, exit code, a phrase the one error line must hold)
CASES: list[tuple[str, str, Callable[[Inputs], list[str]], int, str]] = [
    ("test-missing-checkpoint", TRAIN, lambda i: ["test", "--config", CONFIG, "--ckpt_path",
                                                  str(i.folder / "missing.ckpt"), "--data.data_dir", i.data],
     2, "does not exist"),
    ("test-without-checkpoint", TRAIN, lambda i: ["test", "--config", CONFIG, "--data.data_dir", i.data,
                                                  "--trainer.logger", "false"], 2, "needs --ckpt_path"),
    ("test-other-architecture", TRAIN, lambda i: ["test", "--config", CONFIG, "--ckpt_path",
                                                  str(i.tampered(_other_architecture, "other.ckpt")),
                                                  "--data.data_dir", i.data, "--trainer.logger", "false", *QUIET],
     2, "weights do not fit deep"),
    ("test-other-class-count", TRAIN, lambda i: ["test", "--config", CONFIG, "--ckpt_path",
                                                 str(i.tampered(_five_classes, "five.ckpt")),
                                                 "--data.data_dir", i.data, "--trainer.logger", "false"],
     2, "has 5 outputs but 'fashion' has 10 classes"),
    ("negative-train-subset", TRAIN, lambda i: ["--model", "scratch", "--data.train_subset", "-5", "--epochs", "1",
                                                "--data.data_dir", i.data, "--logdir", str(i.folder / "logs")],
     2, "train_subset must be a whole number of images"),
    ("logdir-under-a-file", TRAIN, lambda i: ["--model", "scratch", "--epochs", "1", "--data.data_dir", i.data,
                                              "--logdir", str(_a_file(i) / "runs")], 2, "is a file, not a folder"),
    ("missing-data-dir", TRAIN, lambda i: ["--model", "scratch", "--epochs", "1", "--logdir", str(i.folder / "logs"),
                                           "--data.data_dir", str(i.folder / "nowhere"), *QUIET],
     2, "does not exist"),
    ("test-images-56x14", TRAIN, lambda i: ["--model", "scratch", "--epochs", "1", "--logdir", str(i.folder / "logs"),
                                            "--data.data_dir", _bad_header_data(i), *QUIET], 2, "56x14"),
    ("evaluate-no-model-name", EVALUATE, lambda i: [str(i.tampered(_without_model_name, "anon.ckpt")),
                                                    "--data-dir", i.data], 2, "does not say which model"),
    ("evaluate-foreign-weights", EVALUATE, lambda i: [str(i.tampered(_renamed_weights, "renamed.ckpt")),
                                                      "--data-dir", i.data], 2, "weights do not fit"),
    ("knn-n_neighbors-word", EVALUATE, lambda i: ["--baseline", "knn", "--param", "n_neighbors=abc", "--data-dir",
                                                  i.data], 2, "'n_neighbors' parameter"),
    ("knn-n_neighbors-negative", EVALUATE, lambda i: ["--baseline", "knn", "--param", "n_neighbors=-3",
                                                      "--data-dir", i.data], 2, "'n_neighbors' parameter"),
    ("knn-n_neighbors-fraction", EVALUATE, lambda i: ["--baseline", "knn", "--param", "n_neighbors=2.5",
                                                      "--data-dir", i.data], 2, "'n_neighbors' parameter"),
    ("compare-text-accuracy", EVALUATE, lambda i: ["compare", _metrics_with_text_accuracy(i)], 2,
     "test_acc is 'high', not a number"),
    ("iiif-100000-deep", EVALUATE, lambda i: ["predict", str(i.checkpoint), _nested_manifest(i)], 2,
     "nested more than"),
    ("url-to-cloud-metadata", EVALUATE, lambda i: ["predict", str(i.checkpoint),
                                                   "http://169.254.169.254/latest/meta-data/"], 2,
     "link-local address"),
]
if not torch.cuda.is_available():
    CASES.append(("device-cuda-without-gpu", EVALUATE, lambda i: [str(i.checkpoint), "--device", "cuda",
                                                                  "--data-dir", i.data], 2,
                  "asks for a CUDA GPU, but torch sees none"))


def _a_file(inputs: Inputs) -> Path:
    path = inputs.folder / "file.txt"
    path.write_text("not a folder")
    return path


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("tool, build, code, phrase", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_gets_one_clear_sentence(tool: str, build: Callable[[Inputs], list[str]], code: int, phrase: str,
                                           tmp_path: Path, synthetic_data_dir: str, cnn_checkpoint: Path,
                                           monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture) -> None:
    inputs = Inputs(tmp_path, synthetic_data_dir, cnn_checkpoint)
    args = build(inputs)
    made = _files(tmp_path)
    repository = set(ROOT.iterdir())
    monkeypatch.chdir(tmp_path)  # anything written to a relative default path would land here and be seen

    assert (train_main if tool == TRAIN else evaluate_main)(args) == code

    err = capfd.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err[-3000:]
    # The sentence is the error line, or for predict the line naming the refused input above its summary.
    assert phrase in errors[0] or (args[0] == "predict" and phrase in err), err[-3000:]
    assert "Traceback" not in err
    assert _files(tmp_path) == made, "files were written: " + ", ".join(map(str, _files(tmp_path) - made))
    assert set(ROOT.iterdir()) == repository


def test_read_only_log_dir_is_refused_before_training(tmp_path: Path, synthetic_data_dir: str,
                                                      monkeypatch: pytest.MonkeyPatch, capfd) -> None:
    """Root ignores permission bits, so the check's view of the folder is made read-only instead."""
    import fmnist.training.lightning_cli as lightning_cli

    logs = tmp_path / "logs"
    logs.mkdir()
    real_access = lightning_cli.os.access
    monkeypatch.setattr(lightning_cli.os, "access", lambda path, mode, *args, **kwargs:
                        Path(path) != logs and real_access(path, mode, *args, **kwargs))
    assert train_main(["--model", "scratch", "--epochs", "1", "--data.data_dir", synthetic_data_dir,
                       "--logdir", str(logs)]) == 2
    err = capfd.readouterr().err
    assert f"cannot write runs to {logs} ({logs} is not writable)" in err and "Traceback" not in err
    assert not any(logs.iterdir())


def test_a_run_that_fails_in_setup_leaves_no_version_folder(tmp_path: Path, synthetic_data_dir: str) -> None:
    """The data fails to load after Lightning made the run folder (config.yaml): the folder goes again."""
    bad = Inputs(tmp_path, synthetic_data_dir, Path())
    data = _bad_header_data(bad)
    assert train_main(["--model", "scratch", "--epochs", "1", "--data.data_dir", data,
                       "--logdir", str(tmp_path / "logs"), *QUIET]) == 2
    assert not list((tmp_path / "logs").rglob("version_*"))


# -- issue 30: no silent success ------------------------------------------------------------------------
# A diverged, preempted or disk-full run never looks like a result; a report never overwrites a run; every check
# that can fail comes before anything is written. (The soak test of random kills is tests/training/test_soak.py.)
TINY = ["--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "2",
        "--data.batch_size", "16", *QUIET]


def _strict_json(path: Path) -> dict:
    """The file parsed by a strict parser: NaN or Infinity in it fails the test."""
    def refuse(constant: str) -> None:
        raise AssertionError(f"{path} holds {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


def _the_error(capfd: pytest.CaptureFixture) -> str:
    """The one ``error:`` line of a refused command (and no traceback)."""
    err = capfd.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err[-3000:]
    return errors[0]


@pytest.mark.parametrize("lr", ["1000", "1e9"])
def test_a_diverging_run_stops_at_once_and_says_so(lr: str, tmp_path: Path, synthetic_data_dir: str,
                                                   monkeypatch: pytest.MonkeyPatch, capfd) -> None:
    monkeypatch.chdir(tmp_path)
    code = train_main(["--model", "scratch", "--model.lr", lr, "--epochs", "2", "--data.data_dir", synthetic_data_dir,
                       "--logdir", str(tmp_path / "logs"), *TINY])
    error = _the_error(capfd)
    assert code == 2
    assert error.startswith("error: training diverged at epoch 1, step ") and "last finite loss" in error
    assert f"model.lr, now {float(lr):g}" in error
    metrics = _strict_json(tmp_path / "logs" / "scratch" / "version_0" / "metrics.json")
    assert metrics["status"] == "diverged" and metrics["test_acc"] is None and metrics["epoch"] == 1
    assert metrics["step"] <= 4  # it stopped in the first epoch's few batches, not after it
    assert not list((tmp_path / "logs").rglob("*.ckpt"))  # no checkpoint of broken weights
    assert {p.name for p in tmp_path.iterdir()} == {"logs"}


def test_compare_refuses_a_diverged_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd) -> None:
    run = tmp_path / "runs" / "deep" / "version_0"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"status": "diverged", "message": "training diverged at epoch 2",
                                                  "model": "deep", "test_acc": None}))
    monkeypatch.chdir(tmp_path)
    assert evaluate_main(["compare", str(run)]) == 2
    assert "ended 'diverged'" in _the_error(capfd)
    assert not (tmp_path / "reports").exists()


def test_cross_validation_never_averages_a_diverged_fold(tmp_path: Path, synthetic_data_dir: str,
                                                         monkeypatch: pytest.MonkeyPatch, capfd) -> None:
    monkeypatch.chdir(tmp_path)
    code = train_main(["--model", "scratch", "--model.lr", "1000", "--epochs", "1", "--folds", "2",
                       "--data.data_dir", synthetic_data_dir, "--logdir", str(tmp_path / "logs"), *TINY])
    error = _the_error(capfd)
    assert code == 2 and "fold(s) 0, 1 of 2 diverged" in error
    summary = _strict_json(tmp_path / "logs" / "scratch-cv" / "cv_results.json")
    assert summary["aggregate"]["folds_done"] == 0 and summary["aggregate"]["test_acc"]["mean"] is None
    assert [d["fold"] for d in summary["diverged"]] == [0, 1]


def test_a_reproduce_piece_whose_run_diverged_fails(tmp_path: Path) -> None:
    """A rerun of ``python -m fmnist.reproduce`` must not evaluate (and average) the diverged run's checkpoint."""
    from fmnist.reproduce import run as reproduce_run
    from fmnist.reproduce.experiments import BY_NAME

    exp = BY_NAME["deep"]
    ctx = reproduce_run.Context(reproduce_run.get_budget("quick"), tmp_path / "root", 0, None, lambda *_: None,
                                ledger=tmp_path / "results", repo=tmp_path)
    run_dir = ctx.run_dir(exp.name, 42)
    run_dir.mkdir(parents=True)
    (run_dir / reproduce_run.RECIPE_FILE).write_text(json.dumps(reproduce_run.piece_recipe(ctx, exp), sort_keys=True))
    (run_dir / "metrics.json").write_text(json.dumps({"status": "diverged", "test_acc": None}))
    with pytest.raises(FmnistError, match="ended 'diverged'"):
        reproduce_run.ensure_run(ctx, exp, 42)


def _fake_run(inputs: Inputs) -> Path:
    """A training run folder: the tiny checkpoint as its best.ckpt and a run's metrics.json."""
    run = inputs.folder / "runs" / "cnn" / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.ckpt").write_bytes(inputs.checkpoint.read_bytes())
    (run / "metrics.json").write_text(json.dumps({"status": "finished", "model": "cnn", "test_acc": 0.5,
                                                  "best_checkpoint": str(run / "checkpoints" / "best.ckpt")}))
    return run


def test_a_report_never_overwrites_its_run(tmp_path: Path, synthetic_data_dir: str, cnn_checkpoint: Path,
                                           monkeypatch: pytest.MonkeyPatch, capfd) -> None:
    run = _fake_run(Inputs(tmp_path, synthetic_data_dir, cnn_checkpoint))
    before = {p: p.read_bytes() for p in _files(run)}
    monkeypatch.chdir(tmp_path)
    assert evaluate_main([str(run), "--out", str(run), "--data-dir", synthetic_data_dir]) == 2
    assert "is a training run folder" in _the_error(capfd)
    assert {p: p.read_bytes() for p in _files(run)} == before
    for command in (["compare", str(run), "--out", str(run)],
                    ["predict", str(run), str(tmp_path / "none.png"), "--out", str(run)]):
        assert evaluate_main(command) == 2
        assert "is a training run folder" in _the_error(capfd)
    assert {p: p.read_bytes() for p in _files(run)} == before


def test_a_report_never_overwrites_another_report(tmp_path: Path, synthetic_data_dir: str, cnn_checkpoint: Path,
                                                  monkeypatch: pytest.MonkeyPatch, capfd) -> None:
    run = _fake_run(Inputs(tmp_path, synthetic_data_dir, cnn_checkpoint))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "reports" / "x"
    assert evaluate_main([str(run), "--out", str(out), "--data-dir", synthetic_data_dir, "--no-plots"]) == 0
    capfd.readouterr()
    report = (out / "metrics.json").read_bytes()
    # the same command again refreshes its own report; another split's report or another command is refused
    assert evaluate_main([str(run), "--out", str(out), "--data-dir", synthetic_data_dir, "--no-plots"]) == 0
    capfd.readouterr()
    assert evaluate_main([str(run), "--split", "val", "--out", str(out), "--data-dir", synthetic_data_dir]) == 2
    assert "holds the report 'cnn_v0_fashion-test', not 'cnn_v0_fashion-val'" in _the_error(capfd)
    assert evaluate_main(["compare", str(run), "--out", str(out)]) == 2
    assert "holds a report of `evaluate.py RUN`" in _the_error(capfd)
    assert json.loads((out / "metrics.json").read_bytes())["name"] == json.loads(report)["name"]


def test_an_empty_out_folder_is_left_by_no_refused_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capfd) -> None:
    monkeypatch.chdir(tmp_path)
    assert evaluate_main(["compare", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
    _the_error(capfd)
    assert not (tmp_path / "out").exists()


RUN_NAME_ESCAPES = [("name", ["--trainer.logger.init_args.name", "../../x"]),
                    ("version", ["--trainer.logger.init_args.version", "../../../x"]),
                    ("dot-dot", ["--trainer.logger.init_args.name", ".."])]


@pytest.mark.parametrize("flags", [case[1] for case in RUN_NAME_ESCAPES], ids=[case[0] for case in RUN_NAME_ESCAPES])
def test_run_names_and_versions_are_one_folder(flags: list[str], tmp_path: Path, synthetic_data_dir: str,
                                               monkeypatch: pytest.MonkeyPatch, capfd) -> None:
    work = tmp_path / "a" / "b" / "c"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    assert train_main(["--model", "scratch", "--epochs", "1", "--data.data_dir", synthetic_data_dir,
                       "--logdir", str(work / "logs"), *flags, *TINY]) == 2
    assert "must be one folder name" in _the_error(capfd)
    assert not _files(tmp_path)


def test_too_many_folds_is_refused_before_anything_is_written(tmp_path: Path, synthetic_data_dir: str,
                                                               monkeypatch: pytest.MonkeyPatch, capfd) -> None:
    monkeypatch.chdir(tmp_path)
    assert train_main(["--model", "scratch", "--folds", "100000", "--data.data_dir", synthetic_data_dir,
                       "--logdir", str(tmp_path / "logs"), *TINY]) == 2
    error = _the_error(capfd)
    # 600 synthetic training images, 60 per class
    assert "--folds 100000 needs at least 100000 training images of every class, but the smallest class has 60" in error
    assert not (tmp_path / "logs").exists()
    assert train_main(["--model", "scratch", "--folds", "2", "--epochs", "1", "--data.data_dir", synthetic_data_dir,
                       "--logdir", str(tmp_path / "logs"), *TINY]) == 0  # the correct CV into that folder runs


def test_compare_refuses_a_huge_metrics_file_before_reading_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capfd) -> None:
    run = tmp_path / "runs" / "deep" / "version_0"
    run.mkdir(parents=True)
    with (run / "metrics.json").open("wb") as handle:
        handle.truncate(2 * 2**30)  # 2 GiB, sparse: reading it whole would take gigabytes of memory
    monkeypatch.chdir(tmp_path)
    assert evaluate_main(["compare", str(run)]) == 2
    assert "is 2048.0 MiB, over the 16.0 MiB a file of this kind can be" in _the_error(capfd)
    assert not (tmp_path / "reports").exists()


def test_no_json_fmnist_writes_holds_nan(tmp_path: Path) -> None:
    from fmnist.files import write_json_atomic
    from fmnist.runs import write_metrics

    write_metrics(tmp_path, {"test_acc": float("nan"), "curve": [1.0, float("inf"), -float("inf")]})
    assert _strict_json(tmp_path / "metrics.json") == {"test_acc": None, "curve": [1.0, None, None]}
    write_json_atomic(tmp_path / "x.json", {"v": np.float32("nan")}, default=lambda v: v.item())
    assert _strict_json(tmp_path / "x.json") == {"v": None}


def test_a_full_disk_while_writing_a_report_keeps_the_previous_one(tmp_path: Path, synthetic_data_dir: str,
                                                                   cnn_checkpoint: Path,
                                                                   monkeypatch: pytest.MonkeyPatch, capfd) -> None:
    import errno
    import os

    import fmnist.predictions
    from fmnist.predictions import Predictions

    run = _fake_run(Inputs(tmp_path, synthetic_data_dir, cnn_checkpoint))
    out = tmp_path / "report"
    args = [str(run), "--out", str(out), "--data-dir", synthetic_data_dir, "--no-plots"]
    monkeypatch.chdir(tmp_path)
    assert evaluate_main(args) == 0
    capfd.readouterr()
    good = (out / "predictions.npz").read_bytes()

    def disk_fills(handle, **arrays) -> None:
        handle.write(b"PK" * 5000)  # some bytes reach the disk, then it is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fmnist.predictions.np, "savez_compressed", disk_fills)
    assert evaluate_main(args) == 2
    assert _the_error(capfd).startswith(f"error: no space left on the disk holding {out / 'predictions.npz'}")
    monkeypatch.undo()
    assert (out / "predictions.npz").read_bytes() == good and Predictions.load(out).n == 100
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
