"""Hostile files: a checkpoint or a baseline cache that carries code is refused, and its code never runs."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import skops.io as sio
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from fmnist import baselines as B
from fmnist.baselines.estimator_files import load_estimator
from fmnist.commands.shims import evaluate_py as evaluate_main
from fmnist.errors import FmnistError
from fmnist.serialization import read_checkpoint

ROOT = Path(__file__).resolve().parent.parent


class Payload:
    """Unpickling this runs ``Path.touch(marker)``: the proof that code from the file executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def payload_checkpoint(folder: Path, marker: Path) -> Path:
    """A file shaped like fmnist's checkpoints (state_dict + hyper_parameters) with a payload inside."""
    path = folder / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"model_name": "deep", "trap": Payload(marker)},
                "epoch": 0}, path)
    return path


def run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "FMNIST_NO_DOWNLOAD": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True,
                          timeout=180, cwd=cwd, env=env)


def test_read_checkpoint_refuses_a_payload_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = payload_checkpoint(tmp_path, marker)
    with pytest.raises(FmnistError, match=r"refusing to load .*evil\.ckpt.*could run code"):
        read_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("command", [
    ("evaluate.py", "{ckpt}"),
    ("evaluate.py", "predict", "{ckpt}", "{photo}"),
    ("evaluate.py", "gradcam", "{ckpt}"),
    ("train.py", "test", "--config", str(ROOT / "configs" / "deep.yaml"), "--ckpt_path", "{ckpt}",
     "--trainer.logger", "false"),
], ids=["evaluate", "predict", "gradcam", "train-test"])
def test_commands_refuse_a_payload_checkpoint(command: tuple[str, ...], tmp_path: Path,
                                              synthetic_data_dir: str) -> None:
    marker = tmp_path / "pwned"
    ckpt = payload_checkpoint(tmp_path, marker)
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"")  # never reached: the checkpoint is refused first
    args = [a.format(ckpt=ckpt, photo=photo) for a in command[1:]]
    if command[0] == "train.py":
        args += ["--data.data_dir", synthetic_data_dir]
    result = run(command[0], *args, cwd=tmp_path)
    assert result.returncode != 0
    assert not marker.exists(), "the checkpoint's code ran"
    assert "refusing to load" in result.stderr and "could run code" in result.stderr
    assert "Traceback" not in result.stderr


def test_weights_only_false_is_refused(tmp_path: Path, synthetic_data_dir: str) -> None:
    result = run("train.py", "test", "--config", str(ROOT / "configs" / "deep.yaml"), "--weights_only", "false",
                 "--data.data_dir", synthetic_data_dir, "--trainer.logger", "false", cwd=tmp_path)
    assert result.returncode == 2 and "--weights_only false is refused" in result.stderr
    assert "Traceback" not in result.stderr


def test_skops_file_asking_for_a_function_is_refused(tmp_path: Path) -> None:
    estimator = LogisticRegression()
    estimator.hook = os.system  # skops records it as the type posix.system / nt.system
    path = tmp_path / "logreg.skops"
    sio.dump(estimator, path)
    with pytest.raises(FmnistError, match=r"refusing to load .*system"):
        load_estimator(path, trusted=B.get_baseline("logreg").trusted_types)


def test_poisoned_baseline_cache_is_refused_and_nothing_runs(synthetic_data_dir: str, tmp_path: Path,
                                                             capsys) -> None:
    argv = ["--baseline", "knn", "--data-dir", synthetic_data_dir, "--train-subset", "300", "--n-jobs", "1",
            "--artifacts", str(tmp_path / "art"), "--out", str(tmp_path / "report"), "--no-plots"]
    assert evaluate_main(argv) == 0
    (cached,) = (tmp_path / "art").glob("knn-*.skops")
    marker = tmp_path / "pwned"
    # 1) a pickle in place of the skops file: not even opened as a pickle
    cached.write_bytes(pickle.dumps(Payload(marker)))
    assert evaluate_main(argv) == 2
    assert "not a readable skops file" in capsys.readouterr().err and not marker.exists()
    # 2) a valid skops file that asks for a dangerous type
    evil = KNeighborsClassifier()
    evil.hook = os.system
    sio.dump(evil, cached)
    assert evaluate_main(argv) == 2
    err = capsys.readouterr().err
    assert "refusing to load" in err and "system" in err and not marker.exists()
