"""Soak: a tiny training run killed at random moments (SIGTERM, SIGKILL, a full disk) resumes to the same result.

Each moment starts the run in a fresh folder, interrupts it -- a signal after a random delay, or a disk that
fills after a random number of bytes (simulated: the run's atomic writes fail with ENOSPC past that budget,
which needs no root and no small file system) -- and checks what an operator would see: a non-zero exit
with one sentence and no traceback, and nothing half-written that a later command reads (every checkpoint
loads). Then it continues the way an operator would (``--resume``, or the same command again when nothing
could be resumed) and compares the final metrics.json with the uninterrupted run's: everything but timing.

Three moments run in the default suite (one of each kind); ``-m slow`` runs twenty.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--model", "deep", "--data.batch_size", "16", "--epochs", "3", "--data.augment.enabled", "true",
        "--trainer.limit_train_batches", "6", "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "2",
        "--early_stopping.patience", "10", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false"]
TIMING = ("wall_seconds", "epoch_seconds", "seconds_per_epoch", "finished_at", "resumes")
KINDS = ("SIGTERM", "SIGKILL", "ENOSPC")

# Runs train.py's main with every file written through fmnist.files (checkpoints, metrics.json) failing with
# ENOSPC once FILL_AFTER_BYTES bytes have been written: the bytes that fit are written first, as on a real disk.
DISK_FILLER = '''
import errno
import os
import sys

budget = [int(os.environ["FILL_AFTER_BYTES"])]
real_fdopen = os.fdopen


class FillingHandle:
    def __init__(self, handle):
        self._handle = handle

    def write(self, data):
        size = memoryview(data).nbytes
        if size > budget[0]:
            self._handle.write(memoryview(data).cast("B")[:budget[0]])
            budget[0] = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        budget[0] -= size
        return self._handle.write(data)

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._handle.close()


def fdopen(fd, mode="r", *args, **kwargs):
    handle = real_fdopen(fd, mode, *args, **kwargs)
    return FillingHandle(handle) if "w" in mode else handle


os.fdopen = fdopen
from fmnist.commands.shims import train_py as main

sys.exit(main(sys.argv[1:]))
'''


def _command(data_dir: str, logdir: Path, *extra: str, script: Path | None = None) -> list[str]:
    return [sys.executable, str(script or ROOT / "train.py"), *ARGS, "--logdir", str(logdir),
            "--data.data_dir", data_dir, *extra]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "FMNIST_NO_DOWNLOAD": "1", "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(ROOT), **extra}


def _run(command: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=cwd, env=_env(**env))


def _finished_run(logdir: Path) -> Path | None:
    """The newest version folder holding a finished run's metrics.json."""
    runs = sorted(logdir.glob("deep/version_*"), key=lambda p: int(p.name.split("_")[1]))
    done = [r for r in runs if (r / "metrics.json").is_file()
            and json.loads((r / "metrics.json").read_text()).get("status") == "finished"]
    return done[-1] if done else None


def _comparable(metrics: dict) -> dict:
    """Everything but timing; the best checkpoint by its name (the folders differ)."""
    kept = {key: value for key, value in metrics.items() if key not in TIMING}
    kept["best_checkpoint"] = Path(kept["best_checkpoint"]).name if kept.get("best_checkpoint") else None
    return kept


@pytest.fixture(scope="module")
def uninterrupted(synthetic_data_dir: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The run never stopped: its metrics, how long it took, and how many checkpoint bytes it writes."""
    folder = tmp_path_factory.mktemp("soak-whole")
    started = time.perf_counter()
    result = _run(_command(synthetic_data_dir, folder / "logs"), folder)
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr[-3000:]
    run = _finished_run(folder / "logs")
    assert run is not None
    checkpoint_bytes = sum(p.stat().st_size for p in (run / "checkpoints").glob("*.ckpt"))
    return {"metrics": json.loads((run / "metrics.json").read_text()), "seconds": seconds,
            "checkpoint_bytes": checkpoint_bytes}


def _interrupt(kind: str, rng: random.Random, baseline: dict, data_dir: str, folder: Path) -> tuple[int, str]:
    """Run the training and interrupt it once; its exit code and stderr."""
    logdir = folder / "logs"
    if kind == "ENOSPC":
        (folder / "fill_disk.py").write_text(DISK_FILLER)
        budget = int(rng.uniform(0, 2.5 * baseline["checkpoint_bytes"]))  # best + last of each epoch, roughly
        result = _run(_command(data_dir, logdir, script=folder / "fill_disk.py"), folder,
                      FILL_AFTER_BYTES=str(budget))
        return result.returncode, result.stderr
    process = subprocess.Popen(_command(data_dir, logdir), cwd=folder, env=_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    time.sleep(rng.uniform(0.0, baseline["seconds"]))
    if process.poll() is None:
        process.send_signal(signal.SIGTERM if kind == "SIGTERM" else signal.SIGKILL)
    _, stderr = process.communicate(timeout=600)
    return process.returncode, stderr


def _check_interruption(kind: str, code: int, stderr: str) -> None:
    assert "Traceback" not in stderr, stderr[-3000:]
    if code == 0:
        return  # the moment fell after the run finished
    lines = [line for line in stderr.splitlines() if line.strip()]
    if kind == "SIGKILL":
        assert code == -signal.SIGKILL
    elif kind == "SIGTERM":
        # 143 with the sentence; -15 only when the signal beat train.py's first line (the interpreter starting)
        assert code in (128 + signal.SIGTERM, -signal.SIGTERM), stderr[-3000:]
        if code > 0:
            assert lines[-1].startswith("stopped by SIGTERM"), stderr[-3000:]
    else:
        errors = [line for line in lines if line.startswith("error:")]
        assert code == 2 and len(errors) == 1 and "no space left on the disk holding" in errors[0], stderr[-3000:]


def _continue(data_dir: str, folder: Path) -> Path:
    """What an operator does next: --resume, or the same command again when nothing could be resumed."""
    logdir = folder / "logs"
    for _ in range(2):
        if _finished_run(logdir) is not None:
            break
        result = _run(_command(data_dir, logdir, "--resume"), folder)
        if result.returncode == 2 and "nothing to resume" in result.stderr:
            result = _run(_command(data_dir, logdir), folder)
        assert result.returncode == 0, result.stderr[-3000:]
    run = _finished_run(logdir)
    assert run is not None
    return run


def _soak(moment: int, baseline: dict, data_dir: str, folder: Path) -> None:
    rng = random.Random(30_000 + moment)
    kind = KINDS[moment % len(KINDS)]
    code, stderr = _interrupt(kind, rng, baseline, data_dir, folder)
    _check_interruption(kind, code, stderr)
    for checkpoint in (folder / "logs").rglob("*.ckpt"):  # nothing half-written that --resume would read
        assert isinstance(torch.load(checkpoint, weights_only=True), dict), checkpoint
    for metrics in (folder / "logs").rglob("metrics.json"):
        json.loads(metrics.read_text())
    run = _continue(data_dir, folder)
    got = json.loads((run / "metrics.json").read_text())
    assert _comparable(got) == _comparable(baseline["metrics"]), f"moment {moment} ({kind})"
    assert set(p.name for p in folder.iterdir()) <= {"logs", "fill_disk.py"}  # nothing written elsewhere


@pytest.mark.parametrize("moment", range(3))
def test_a_run_interrupted_at_a_random_moment_resumes_to_the_same_result(
        moment: int, uninterrupted: dict, synthetic_data_dir: str, tmp_path: Path) -> None:
    _soak(moment, uninterrupted, synthetic_data_dir, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("moment", range(20))
def test_twenty_random_interruptions_resume_to_the_same_result(
        moment: int, uninterrupted: dict, synthetic_data_dir: str, tmp_path: Path) -> None:
    _soak(moment, uninterrupted, synthetic_data_dir, tmp_path)
