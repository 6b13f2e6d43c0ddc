"""A sweep refused for its storage leaves nothing behind; a diverging trial is pruned and the study goes on."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from optuna.trial import TrialState

import fmnist.sweep.storage as storage
from fmnist.errors import FmnistError
from fmnist.sweep.__main__ import main as sweep_main
from fmnist.sweep.runner import make_sweep, open_study, run_sweep
from fmnist.sweep.space import load_sweep


def _one_error(capfd: pytest.CaptureFixture) -> str:
    err = capfd.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err[-3000:]
    return errors[0]


def test_an_sqlite_url_in_a_missing_folder_is_named_not_created(write_sweep, tmp_path: Path, capfd) -> None:
    missing = tmp_path / "nonexistent" / "dir"
    code = sweep_main(["--config", str(write_sweep()), "--storage", f"sqlite:///{missing}/s.db",
                       "--out", str(tmp_path / "out")])
    assert code == 2
    assert f"the folder {missing} of --storage sqlite:///{missing}/s.db does not exist" in _one_error(capfd)
    assert not (tmp_path / "nonexistent").exists() and not (tmp_path / "out").exists()


def test_a_plain_postgresql_url_uses_the_installed_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    installed = {"psycopg2"}
    monkeypatch.setattr(storage.importlib.util, "find_spec", lambda name: object() if name in installed else None)
    assert storage.with_driver("postgresql://user:pw@db:5432/x") == "postgresql+psycopg2://user:pw@db:5432/x"
    installed.add("psycopg")
    assert storage.with_driver("postgresql://user@db/x") == "postgresql+psycopg://user@db/x"
    assert storage.with_driver("postgresql+psycopg2://user@db/x") == "postgresql+psycopg2://user@db/x"
    assert storage.with_driver("sqlite:///x.db") == "sqlite:///x.db"


def test_an_unreachable_postgresql_server_is_one_sentence_and_no_out_folder(write_sweep, tmp_path: Path,
                                                                             capfd) -> None:
    pytest.importorskip("psycopg2")
    code = sweep_main(["--config", str(write_sweep()), "--storage", "postgresql://user@127.0.0.1:1/db",
                       "--out", str(tmp_path / "out")])
    assert code == 2
    error = _one_error(capfd)
    assert "cannot reach the sweep storage postgresql://user@127.0.0.1:1/db" in error and "driver" not in error
    assert not (tmp_path / "out").exists()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A server that accepts connections and never answers (a hung database, a black-holing proxy)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


def test_a_server_that_never_answers_times_out(silent_server: int, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("psycopg2")
    monkeypatch.setattr(storage, "CONNECT_TIMEOUT", 1)
    outcome: list[BaseException] = []

    def connect() -> None:
        try:
            storage.open_storage(f"postgresql://user@127.0.0.1:{silent_server}/db")
        except BaseException as exc:  # noqa: BLE001 -- handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(120)  # a guard against hanging the suite, far above the 1 s asked for, not a timing check
    assert not worker.is_alive(), "open_storage hung on a server that never answers"
    assert isinstance(outcome[0], FmnistError) and "cannot reach the sweep storage" in str(outcome[0])


def test_a_refused_study_leaves_no_out_folder(write_sweep, sweep_dirs, tmp_path: Path) -> None:
    (sweep_dirs["logdir"] / "t" / "trial_0").mkdir(parents=True)  # left by an earlier sweep of that name
    sweep = make_sweep(load_sweep(write_sweep()), **sweep_dirs)
    with pytest.raises(FmnistError, match="is left from an earlier sweep"):
        open_study(sweep)
    assert not sweep_dirs["out_dir"].exists()


def test_a_diverging_trial_is_pruned_and_the_study_goes_on(write_sweep, sweep_dirs) -> None:
    path = write_sweep(trials=2, space={"model.lr": {"log_uniform": [1.0e-3, 1.0e6]}},
                       enqueue=[{"model.lr": 1.0e6}, {"model.lr": 0.003}])
    result = run_sweep(make_sweep(load_sweep(path), **sweep_dirs))
    diverged, sane = open_study(result.sweep, create=False).get_trials(deepcopy=False)
    assert diverged.state == TrialState.PRUNED and "training diverged at epoch 1" in diverged.user_attrs["diverged"]
    assert sane.state == TrialState.COMPLETE
    metrics = json.loads((sweep_dirs["logdir"] / "t" / "trial_0" / "metrics.json").read_text())
    assert metrics["status"] == "diverged" and metrics["state"] == "diverged" and metrics["val_acc"] is None
    assert "diverged, pruned" in result.report["markdown"].read_text()
