"""``fmnist warm``: commands handed to a preloaded server run as they would cold (same files, output, status,
signals), only for this user, only with the code the server loaded, and never silently anywhere else."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fmnist.commands import warm_client as H
from fmnist.commands.warm import _wait_for_command

REPO = Path(__file__).resolve().parents[2]
FMNIST = [sys.executable, "-m", "fmnist.commands"]
TINY = ["--epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2",
        "--trainer.limit_test_batches", "2"]


def _env(sock: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "FMNIST_WARM"}
    return {**env, "FMNIST_WARM_SOCKET": str(sock), "OMP_NUM_THREADS": "1", **extra}


@pytest.fixture(scope="module")
def server() -> Iterator[Path]:
    """A warm server of this test module's own, on a socket in a private temporary folder (short: AF_UNIX paths
    are limited to 108 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="fw-"))
    sock = folder / "w.sock"
    try:
        started = subprocess.run([*FMNIST, "warm", "start"], capture_output=True, text=True, cwd=REPO,
                                 env=_env(sock), timeout=300)
        assert started.returncode == 0 and "warm server ready" in started.stdout, started.stderr
        yield sock
    finally:
        subprocess.run([*FMNIST, "warm", "stop"], capture_output=True, cwd=REPO, env=_env(sock), timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def test_a_training_run_handed_to_the_server_is_the_run_a_cold_start_makes(
        server: Path, synthetic_data_dir: str, tmp_path: Path) -> None:
    # -X importtime lists every module the client itself imports: served, it never imports torch
    done = subprocess.run([sys.executable, "-X", "importtime", str(REPO / "train.py"), "--model", "lenet5",
                           "--data.data_dir", synthetic_data_dir, "--logdir", "logs", *TINY],
                          capture_output=True, text=True, cwd=tmp_path, env=_env(server), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    client_imports = {line.split("|")[-1].strip() for line in done.stderr.splitlines()
                      if line.startswith("import time:")}
    assert "fmnist.commands.warm_client" in client_imports and "torch" not in client_imports
    metrics = json.loads((tmp_path / "logs" / "lenet5" / "version_0" / "metrics.json").read_text())  # client's cwd
    assert metrics["model"] == "lenet5" and metrics["epochs"] == 1 and metrics["test_acc"] is not None
    assert metrics["warm_server"] is True
    assert "wrote logs/lenet5/version_0/metrics.json" in done.stdout  # the verb's output, on the client's stdout
    assert "note:" not in done.stderr


def test_a_mistake_is_the_same_sentence_and_status_served(server: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    served = subprocess.run([*FMNIST, "train", "fit", "--config", str(missing)], capture_output=True, text=True,
                            cwd=tmp_path, env=_env(server), timeout=300)
    cold = subprocess.run([*FMNIST, "train", "fit", "--config", str(missing)], capture_output=True, text=True,
                          cwd=tmp_path, env={**_env(server), "FMNIST_WARM": "0"}, timeout=300)
    assert served.returncode == cold.returncode != 0
    assert served.stderr.strip().splitlines()[-1] == cold.stderr.strip().splitlines()[-1]
    assert "nope.yaml" in served.stderr


def test_sigterm_to_the_client_stops_the_served_training_with_its_sentence(
        server: Path, synthetic_data_dir: str, tmp_path: Path) -> None:
    process = subprocess.Popen([*FMNIST, "train", "--model", "lenet5", "--data.data_dir", synthetic_data_dir,
                                "--logdir", "logs", "--epochs", "500"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=_env(server))
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("logs/lenet5/version_0/checkpoints/*.ckpt")) and time.monotonic() < deadline:
        time.sleep(0.2)  # training for real (an epoch's checkpoint exists)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "SIGTERM" in stderr and "--resume" in stderr  # the training's own sentence, forwarded


def test_status_start_and_stop_say_what_is_there(server: Path, tmp_path: Path) -> None:
    status = subprocess.run([*FMNIST, "warm", "status"], capture_output=True, text=True, env=_env(server))
    assert status.returncode == 0 and f"at {server}" in status.stdout
    again = subprocess.run([*FMNIST, "warm", "start"], capture_output=True, text=True, env=_env(server))
    assert again.returncode == 0 and "running already" in again.stdout
    none = tmp_path / "none.sock"
    assert subprocess.run([*FMNIST, "warm", "status"], capture_output=True, env=_env(none)).returncode == 1


def test_a_client_with_other_code_is_refused_before_anything_runs() -> None:
    ours, theirs = socket.socketpair()
    ours.settimeout(30)
    with ours, theirs:
        worker = threading.Thread(target=_wait_for_command, args=(theirs, "server-code", os.getpid(), 1))
        worker.start()
        H.send_message(ours, {"verb": "train", "argv": [], "prog": "x", "cwd": "/", "env": {},
                              "fingerprint": "other-code"}, fds=[0, 1, 2])
        reply, _ = H.receive_message(ours)
        worker.join(10)
    assert "files changed since the server started" in reply["refused"]


def test_a_refusing_or_dead_server_is_said_and_the_command_runs_here(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    folder = Path(tempfile.mkdtemp(prefix="fw-"))
    try:
        sock = folder / "w.sock"
        monkeypatch.delenv("FMNIST_WARM", raising=False)
        monkeypatch.setenv("FMNIST_WARM_SOCKET", str(sock))
        assert H.handoff("train", [], "fmnist train") is None  # no server: runs here, nothing said
        assert capsys.readouterr().err == ""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(sock))
        listener.listen(1)

        def refuse() -> None:
            conn, _ = listener.accept()
            with conn:
                H.receive_message(conn, max_fds=3)
                H.send_message(conn, {"refused": "the package's files changed"})

        worker = threading.Thread(target=refuse)
        worker.start()
        assert H.handoff("train", [], "fmnist train") is None
        worker.join(10)
        assert "note: the warm server did not take this command: the package's files changed" in capsys.readouterr().err
        listener.close()  # the socket file stays, nobody behind it
        assert H.handoff("train", [], "fmnist train") is None
        assert "has no server behind it" in capsys.readouterr().err
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_socket_folder_others_can_write_is_never_used(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o777)
    assert "can be written by others" in H.private_folder_problem(folder)
    folder.chmod(0o700)
    assert H.private_folder_problem(folder) is None


@pytest.mark.parametrize(("verb", "argv", "handed"), [
    ("train", ["--model", "deep"], True), ("train", ["--model", "deep", "--gpus", "1"], True),
    ("train", ["--model", "deep", "--gpus", "2"], False), ("train", ["fit", "--trainer.strategy", "ddp"], False),
    ("train", ["fit", "--trainer.devices=2"], False),
    ("models", [], False), ("warm", ["status"], False), ("evaluate", ["runs/x"], True)])
def test_what_is_handed_off(verb: str, argv: list[str], handed: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FMNIST_WARM", raising=False)
    assert H.wanted(verb, argv) is handed
    monkeypatch.setenv("FMNIST_WARM", "0")
    assert H.wanted(verb, argv) is False


def test_the_fingerprint_follows_the_package_files() -> None:
    assert H.code_fingerprint() == H.code_fingerprint() and len(H.code_fingerprint()) == 16
