"""A run killed at any point and resumed ends with the same metrics.json numbers as the uninterrupted run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fmnist.serialization import read_checkpoint
from fmnist.training.callbacks import capture_rng_states, restore_rng_states

ROOT = Path(__file__).resolve().parents[2]

# A callback that ends the process abruptly (no cleanup, no checkpoint, like SIGKILL) at a chosen batch.
KILLER = '''
import os
import lightning as L


class KillAt(L.Callback):
    def __init__(self) -> None:
        self.epoch, self.batch = int(os.environ["KILL_EPOCH"]), int(os.environ["KILL_BATCH"])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os._exit(9)
'''

SAME = ("test_acc", "test_loss", "val_acc", "val_loss", "epochs", "best_epoch", "initial_weight_fingerprint",
        "final_weight_fingerprint", "per_class_acc", "n_train")


def train(data_dir: str, logdir: Path, extra_path: Path, *extra: str, **env_extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FMNIST_NO_DOWNLOAD": "1", "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(extra_path),
           **env_extra}
    args = ["--model", "deep", "--logdir", str(logdir), "--data.data_dir", data_dir, "--data.batch_size", "16",
            "--epochs", "3", "--data.augment.enabled", "true", "--trainer.limit_train_batches", "6",
            "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "2", "--early_stopping.patience",
            "10", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", *extra]
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], capture_output=True, text=True,
                          timeout=600, cwd=logdir.parent, env=env)  # a scratch folder, never the repository


@pytest.mark.parametrize("kill_epoch, kill_batch", [(1, 3)])
def test_killed_and_resumed_run_matches_the_uninterrupted_one(synthetic_data_dir: str, tmp_path: Path,
                                                              kill_epoch: int, kill_batch: int) -> None:
    """``deep`` with augmentation and dropout draws from every generator; a kill mid-epoch or at its start."""
    (tmp_path / "killer.py").write_text(KILLER)
    whole = train(synthetic_data_dir, tmp_path / "whole", tmp_path)
    assert whole.returncode == 0, whole.stderr[-2000:]
    killed = train(synthetic_data_dir, tmp_path / "killed", tmp_path, "--trainer.callbacks+=killer.KillAt",
                   KILL_EPOCH=str(kill_epoch), KILL_BATCH=str(kill_batch))
    assert killed.returncode == 9, killed.stderr[-2000:]
    run = tmp_path / "killed" / "deep" / "version_0"
    assert (run / "checkpoints" / "last.ckpt").is_file() and not (run / "metrics.json").exists()
    resumed = train(synthetic_data_dir, tmp_path / "killed", tmp_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    expected = json.loads((tmp_path / "whole" / "deep" / "version_0" / "metrics.json").read_text())
    got = json.loads((run / "metrics.json").read_text())
    assert {key: got[key] for key in SAME} == {key: expected[key] for key in SAME}
    assert got["resumes"] == 1 and expected["resumes"] == 0
    assert len(got["epoch_seconds"]) == 3  # epochs timed by the killed process are carried over
    # The wall time covers the first process up to its checkpoint, not just the resumed one.
    first_epoch = got["epoch_seconds"][0]
    assert got["wall_seconds"] > first_epoch
    assert not (tmp_path / "killed" / "deep" / "version_1").exists()


def test_rng_states_survive_a_weights_only_checkpoint(tmp_path: Path) -> None:
    """The saved states are plain tensors and values: they load with weights_only=True and replay the draws."""
    import random

    import numpy as np

    states = capture_rng_states()
    expected = (random.random(), float(np.random.rand()), torch.rand(3))
    torch.save({"rng": states}, tmp_path / "states.ckpt")
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    restore_rng_states(read_checkpoint(tmp_path / "states.ckpt")["rng"])
    got = (random.random(), float(np.random.rand()), torch.rand(3))
    assert got[:2] == expected[:2] and torch.equal(got[2], expected[2])
