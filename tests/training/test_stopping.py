"""How a run ends early: a signal (exit 143 / 130 with the resume sentence), a full disk, a damaged checkpoint,
a SLURM requeue, and the epoch times a resumed run reports."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from fmnist.commands.shims import train_py as train_main
from fmnist.errors import FmnistError
from fmnist.files import WriteError, write_bytes_atomic
from fmnist.training.callbacks import EpochTimer
from fmnist.training.checkpoint_files import AtomicCheckpointIO, resume_checkpoint
from fmnist.training.requeue import slurm_requeued_run
from fmnist.training.stopping import TrainingStopped, Where

ROOT = Path(__file__).resolve().parents[2]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
TINY = ["--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "2",
        "--data.batch_size", "16", *QUIET]


# -- epoch times of a resumed run ----------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _trainer(epoch: int) -> SimpleNamespace:
    return SimpleNamespace(current_epoch=epoch, sanity_checking=False, state=SimpleNamespace(fn="fit"))


def _epoch(timer: EpochTimer, clock: Clock, epoch: int, seconds: float, checkpoint: bool = False) -> dict | None:
    """One epoch: start, ``seconds`` of training and validation, its checkpoint (at validation end), its end."""
    module = SimpleNamespace(log=lambda *args, **kwargs: None)
    timer.on_train_epoch_start(_trainer(epoch), module)
    clock.now += seconds
    timer.on_validation_end(_trainer(epoch), module)
    state = timer.state_dict() if checkpoint else None
    clock.now += 0.5  # the checkpoint being written
    timer.on_train_epoch_end(_trainer(epoch), module)
    return state


def test_a_resumed_run_reports_each_epoch_once_with_its_own_time(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr("fmnist.training.callbacks.time.perf_counter", clock)
    first = EpochTimer()
    _epoch(first, clock, 0, 20.0)
    checkpoint = _epoch(first, clock, 1, 21.0, checkpoint=True)  # killed during epoch 2 (index 2) after this
    resumed = EpochTimer()
    resumed.load_state_dict(checkpoint)
    clock.now += 9.0  # the resumed process starts: imports, data, sanity check
    module = SimpleNamespace(log=lambda *args, **kwargs: None)
    resumed.on_train_epoch_end(_trainer(1), module)  # Lightning ends the checkpoint's epoch again: not re-timed
    _epoch(resumed, clock, 2, 22.0)
    assert resumed.epoch_seconds == [20.5, 21.0, 22.5]  # epoch 1's: up to its checkpoint (validation end)


def test_checkpoints_of_older_runs_keep_their_epoch_times() -> None:
    timer = EpochTimer()
    timer.load_state_dict({"epoch_seconds": [3.0, 4.0]})
    assert timer.seconds == {0: 3.0, 1: 4.0}


# -- checkpoints: atomic, and the newest readable one on --resume ------------------------------------
def _training_checkpoint(path: Path, epoch: int) -> Path:
    torch.save({"state_dict": {"w": torch.ones(2)}, "loops": {}, "optimizer_states": [], "epoch": epoch,
                "global_step": 4 * (epoch + 1)}, path)
    return path


def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _training_checkpoint(tmp_path / "last.ckpt", 0)
    before = path.read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(WriteError, match=f"no space left on the disk holding {path}"):
        AtomicCheckpointIO().save_checkpoint({"epoch": 1}, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_resume_skips_a_damaged_newest_checkpoint_and_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "version_0" / "checkpoints"
    folder.mkdir(parents=True)
    _training_checkpoint(folder / "best.ckpt", 1)
    last = _training_checkpoint(folder / "last.ckpt", 2)
    last.write_bytes(last.read_bytes()[: len(last.read_bytes()) // 2])  # truncated, as a full disk left it
    os.utime(folder / "best.ckpt", (1, 1))
    point = resume_checkpoint(tmp_path / "version_0")
    assert point.path == folder / "best.ckpt" and point.epoch == 2
    assert point.note().startswith(f"note: {last} is not a readable checkpoint")
    assert "resuming from best.ckpt (end of epoch 2)" in point.note()
    (folder / "best.ckpt").write_bytes(b"garbage")
    with pytest.raises(FmnistError, match="nothing to resume in .*best.ckpt is not a readable checkpoint .*; .*"
                                          "last.ckpt is not a readable checkpoint \\(RuntimeError: [^.]*\\); start"):
        resume_checkpoint(tmp_path / "version_0")


def test_resume_over_a_truncated_last_checkpoint_continues_from_best(tmp_path: Path, synthetic_data_dir: str,
                                                                      capfd: pytest.CaptureFixture) -> None:
    args = ["--model", "scratch", "--epochs", "2", "--data.data_dir", synthetic_data_dir, "--logdir",
            str(tmp_path / "logs"), "--early_stopping.patience", "5", *TINY]
    assert train_main(args) == 0
    run = tmp_path / "logs" / "scratch" / "version_0"
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    (run / "metrics.json").unlink()
    capfd.readouterr()
    assert train_main([*args, "--resume"]) == 0
    err = capfd.readouterr().err
    assert f"note: {last} is not a readable checkpoint" in err and "resuming from best.ckpt" in err
    assert json.loads((run / "metrics.json").read_text())["resumes"] == 1
    assert not (tmp_path / "logs" / "scratch" / "version_1").exists()


# -- signals ------------------------------------------------------------------------------------------
def _popen(data_dir: str, logdir: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "FMNIST_NO_DOWNLOAD": "1", "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(ROOT)}
    args = ["--model", "scratch", "--epochs", "50", "--data.data_dir", data_dir, "--logdir", str(logdir),
            "--early_stopping.patience", "100", "--trainer.limit_val_batches", "2", "--data.batch_size", "16", *QUIET,
            *extra]
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=logdir.parent, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_run_with_the_resume_sentence(signum: int, code: int, synthetic_data_dir: str,
                                                         tmp_path: Path) -> None:
    process = _popen(synthetic_data_dir, tmp_path / "logs")
    last = tmp_path / "logs" / "scratch" / "version_0" / "checkpoints" / "last.ckpt"
    while not last.is_file() and process.poll() is None:  # the end of the first epoch
        time.sleep(0.2)
    process.send_signal(signum)
    _, err = process.communicate(timeout=300)
    assert process.returncode == code, err[-3000:]
    assert "Traceback" not in err
    sentence = err.strip().splitlines()[-1]
    name = signal.Signals(signum).name
    assert sentence.startswith(f"stopped by {name} at epoch "), err[-3000:]
    assert f"run the same command again with --resume (it continues from {last}, the end of epoch" in sentence
    assert not (last.parent.parent / "metrics.json").exists()


def test_stopped_sentence_without_a_checkpoint() -> None:
    stopped = TrainingStopped(signal.SIGTERM, Where(epoch=1, step=3))
    assert stopped.exit_code == 143
    assert stopped.sentence() == ("stopped by SIGTERM at epoch 1, step 3, before the first checkpoint, so nothing can "
                                  "be resumed: run the same command again.")


# -- SLURM requeue ------------------------------------------------------------------------------------
@pytest.fixture
def slurm(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    return monkeypatch


def _name_dir(tmp_path: Path, versions: dict[str, bool]) -> Path:
    """``{"version_0": finished?}`` -> a run name folder with those runs (each with a checkpoint)."""
    name_dir = tmp_path / "logs" / "deep"
    for version, finished in versions.items():
        (name_dir / version / "checkpoints").mkdir(parents=True)
        write_bytes_atomic(name_dir / version / "checkpoints" / "last.ckpt", b"x")
        if finished:
            (name_dir / version / "metrics.json").write_text("{}")
    return name_dir


def test_a_requeued_slurm_job_continues_its_unfinished_run(slurm: pytest.MonkeyPatch, tmp_path: Path) -> None:
    name_dir = _name_dir(tmp_path, {"version_0": True, "version_1": False})
    hpc = name_dir / "hpc_ckpt_1.ckpt"
    hpc.write_bytes(b"mid-epoch")
    slurm.setenv("SLURM_RESTART_COUNT", "1")
    assert slurm_requeued_run(name_dir, name_dir) == name_dir / "version_1"
    assert not hpc.exists()  # Lightning would load this mid-epoch checkpoint into a new run folder otherwise


def test_a_requeued_slurm_job_whose_run_finished_starts_a_new_one(slurm: pytest.MonkeyPatch, tmp_path: Path) -> None:
    name_dir = _name_dir(tmp_path, {"version_0": True})
    slurm.setenv("SLURM_RESTART_COUNT", "2")
    assert slurm_requeued_run(name_dir, name_dir) is None


def test_a_new_slurm_job_is_not_handed_an_old_requeue_checkpoint(slurm: pytest.MonkeyPatch, tmp_path: Path) -> None:
    name_dir = _name_dir(tmp_path, {"version_0": False})
    (name_dir / "hpc_ckpt_1.ckpt").write_bytes(b"mid-epoch")
    with pytest.raises(FmnistError, match="hpc_ckpt_1.ckpt is Lightning's requeue checkpoint of an earlier SLURM job"):
        slurm_requeued_run(name_dir, name_dir)
    slurm.delenv("SLURM_NTASKS")  # not on SLURM: Lightning never loads those files
    assert slurm_requeued_run(name_dir, name_dir) is None
