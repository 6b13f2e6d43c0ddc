"""The objective and the worker loop: one trial = one ordinary training run, scored on validation data only.

Each trial is ``fit(config=...)`` with the sampled values, written to ``<logdir>/<sweep>/trial_<k>/``
like any run (TensorBoard events, config.yaml, checkpoints, metrics.json), with ``test_after_fit: false``
so no test batch is ever evaluated. Optuna's Lightning pruning callback reports the validation metric
after every epoch and stops a trial the pruner finds hopeless.

Workers -- local processes, or the same command on other machines -- share the study through its
storage. Each claims a trial only while fewer than ``trials`` are finished or running, under a file lock
that makes "count, then ask for a trial" atomic among the processes of one machine (across machines
two workers can, rarely, both take the last slot). Trials left behind are re-run once each, with the
same parameters in a new ``trial_<k>`` folder:

* Ctrl-C (or SIGTERM): the trial is marked failed with ``interrupted: true`` and re-queued by the next run;
* a process that died (SIGKILL, power cut) on this machine: its RUNNING trial names a process that is gone;
* a process on another machine: Optuna's heartbeat marks the trial stale after 2 heartbeats.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import signal
import socket
import sys
import threading
import time
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from filelock import FileLock
from optuna.trial import TrialState
from optuna_integration import PyTorchLightningPruningCallback

from fmnist.errors import FmnistError
from fmnist.runs import write_metrics
from fmnist.sweep.callbacks import ValidationRecorder
from fmnist.sweep.space import SweepSpec, set_path
from fmnist.sweep.storage import DEFAULT_HEARTBEAT, MAX_RETRY, open_storage, sqlite_path
from fmnist.training.api import fit, set_key
from fmnist.training.stopping import STATUS_DIVERGED, STATUS_FINISHED, TrainingDiverged

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
MAX_FAILURES_IN_A_ROW = 3


@dataclass(frozen=True)
class Sweep:
    """A sweep to run: its checked spec and where its study, outputs and trial folders live (picklable)."""

    spec: SweepSpec
    storage: str
    out_dir: Path
    logdir: Path
    trials: int
    heartbeat: int = DEFAULT_HEARTBEAT

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def lock_path(self) -> Path:
        """The lock local workers take to claim a trial: beside an SQLite database, else in the output folder."""
        database = sqlite_path(self.storage)
        return database.with_name(database.name + ".lock") if database else self.out_dir / "study.lock"

    def trial_dir(self, number: int) -> Path:
        return self.logdir / self.name / f"trial_{number}"


def trial_config(sweep: Sweep, params: dict[str, Any], number: int) -> dict[str, Any]:
    """The base config with this trial's values, logged to ``<logdir>/<sweep>/trial_<k>``, never tested."""
    config = copy.deepcopy(sweep.spec.base)
    for key, value in params.items():
        set_path(config, key, value)
    set_key(config, "test_after_fit", False)
    set_key(config, "trainer.logger.init_args.save_dir", str(sweep.logdir))
    set_key(config, "trainer.logger.init_args.name", sweep.name)
    set_key(config, "trainer.logger.init_args.version", f"trial_{number}")
    return config


# -- which process runs a trial ----------------------------------------------------------------------
def process_started(pid: int) -> str | None:
    """The kernel's start time of process ``pid`` (Linux), which tells a reused process id from the original."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def process_alive(pid: Any, started: Any) -> bool:
    if not isinstance(pid, int):
        return True  # not ours to judge: the heartbeat will
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    now = process_started(pid)
    return started is None or now is None or now == started


def _retry(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Optuna's own re-queueing (as for heartbeat-stale trials): same parameters, retry history kept."""
    with warnings.catch_warnings():  # "experimental" in Optuna's words
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(study, copy.deepcopy(trial))


def _dead(trial: optuna.trial.FrozenTrial, local_only: bool) -> bool:
    """Whether a RUNNING trial's process is gone (asked while holding the claim lock, see :func:`_loop`).

    A local worker records its host and process on the trial before it lets go of the lock, so on a
    local SQLite study a RUNNING trial without them was left by a process killed right after asking.
    """
    attrs = trial.user_attrs
    if "pid" not in attrs:
        return local_only
    return attrs.get("host") == socket.gethostname() and attrs["pid"] != os.getpid() \
        and not process_alive(attrs["pid"], attrs.get("pid_started"))


def recover_left_behind(study: optuna.Study, local_only: bool = False) -> list[int]:
    """Fail the RUNNING trials of dead processes on this machine, and re-queue interrupted trials (once each).

    Interrupted: failed without an error of its own (the objective records those), whatever stopped it.

    Call it holding the claim lock. ``local_only``: the storage is a local SQLite file, which no other
    machine uses.
    """
    with warnings.catch_warnings():  # heartbeats: trials of processes silent for 2 beats, on any machine
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    recovered = []
    for trial in trials:
        attrs = trial.user_attrs
        if trial.state == TrialState.RUNNING and _dead(trial, local_only):
            trial = study.tell(trial.number, state=TrialState.FAIL)
        elif not (trial.state == TrialState.FAIL and not attrs.get("error")):
            continue  # finished, running, or failed by its own error (which a re-run would repeat)
        if trial.number not in retried:
            _retry(study, trial)
            recovered.append(trial.number)
    return recovered


# -- the objective -----------------------------------------------------------------------------------
@dataclass
class Outcome:
    number: int
    error: BaseException | None = None


class Objective:
    """Optuna's objective: train one trial, return its validation metric (of the checkpoint the run keeps)."""

    def __init__(self, sweep: Sweep, lock: FileLock | None = None) -> None:
        self.sweep = sweep
        self.lock = lock
        self.outcome: Outcome | None = None

    def __call__(self, trial: optuna.Trial) -> float:
        run_dir = self.sweep.trial_dir(trial.number)
        for key, value in {"host": socket.gethostname(), "pid_started": process_started(os.getpid()),
                           "run_dir": str(run_dir), "interrupted": False, "pid": os.getpid()}.items():  # pid last
            trial.set_user_attr(key, value)
        if self.lock is not None and self.lock.is_locked:
            self.lock.release()  # the trial is claimed and names its process; other workers may claim theirs
        self.outcome = Outcome(trial.number)
        spec = self.sweep.spec
        params = {key: param.suggest(trial) for key, param in spec.space.items()}
        recorder = ValidationRecorder()
        started = time.perf_counter()
        try:
            fit(config=trial_config(self.sweep, params, trial.number),
                callbacks=[recorder, PyTorchLightningPruningCallback(trial, monitor=spec.metric)])
        except optuna.TrialPruned:
            self._record(trial, run_dir, params, recorder, "pruned", started)
            raise
        except TrainingDiverged as exc:
            # Not a result, and not a fault to re-run either (it would diverge again): the trial is pruned, which
            # tells the sampler this region is bad, its metrics.json says it diverged, and the study goes on.
            print(f"trial {trial.number}: {exc}", file=sys.stderr)
            self._record(trial, run_dir, params, recorder, STATUS_DIVERGED, started, message=str(exc))
            trial.set_user_attr("diverged", str(exc)[:500])
            raise optuna.TrialPruned(str(exc)) from None
        except (KeyboardInterrupt, SystemExit) as exc:
            # Lightning answers Ctrl-C with sys.exit(1) after its graceful shutdown.
            if isinstance(exc, SystemExit) and not isinstance(exc.__context__, KeyboardInterrupt):
                self._error(trial, FmnistError(f"trial {trial.number}'s training config was refused (see the "
                                               f"message above)."))
                raise self.outcome.error from None
            _ignore_further_interrupts()  # a second Ctrl-C or SIGTERM must not cut the bookkeeping short
            trial.set_user_attr("interrupted", True)
            raise KeyboardInterrupt from None
        except Exception as exc:
            self._error(trial, exc)
            raise
        row = self._record(trial, run_dir, params, recorder, "complete", started)
        value = row.get(spec.metric)
        if value is None or math.isnan(value):
            self._error(trial, FmnistError(f"trial {trial.number} logged no {spec.metric} (or NaN); does the config "
                                           f"validate (trainer.limit_val_batches > 0)?"))
            raise self.outcome.error
        return value

    def _error(self, trial: optuna.Trial, error: BaseException) -> None:
        """A failure of the trial itself (not an interruption): kept on the trial, so it is not re-run."""
        self.outcome.error = error
        trial.set_user_attr("error", f"{type(error).__name__}: {error}"[:500])

    def _record(self, trial: optuna.Trial, run_dir: Path, params: dict[str, Any], recorder: ValidationRecorder,
                state: str, started: float, message: str | None = None) -> dict[str, Any]:
        """Write the trial's metrics.json (validation only) and keep the essentials on the trial."""
        row = recorder.selected() if state == "complete" else (recorder.epochs[-1] if recorder.epochs else None)
        row = row or {}
        epochs = recorder.epochs[-1]["epoch"] if recorder.epochs else 0
        metrics = {
            "model": self.sweep.spec.base.get("model", {}).get("model_name"),
            "dataset": self.sweep.spec.base.get("data", {}).get("dataset", "fashion"),
            "sweep": self.sweep.name, "trial": trial.number, "state": state, "params": params,
            "status": STATUS_FINISHED if state == "complete" else state,  # pruned, diverged
            **({"message": message} if message else {}),
            "metric": self.sweep.spec.metric,
            "val_acc": row.get("val_acc"), "val_loss": row.get("val_loss"), "val_macro_f1": row.get("val_macro_f1"),
            "test_acc": None, "test_evaluated": False,
            "epochs": epochs, "best_epoch": row.get("epoch"),
            "best_checkpoint": str(run_dir / "checkpoints" / "best.ckpt")
            if (run_dir / "checkpoints" / "best.ckpt").is_file() else None,
            "val_history": recorder.epochs,
            "wall_seconds": round(time.perf_counter() - started, 2),
            "threads": torch.get_num_threads(),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        write_metrics(run_dir, metrics)
        for key in ("epochs", "best_epoch", "wall_seconds", "val_acc", "val_loss"):
            trial.set_user_attr(key, metrics[key])
        return row


# -- a worker -----------------------------------------------------------------------------------------
def count_claimed(study: optuna.Study) -> int:
    """Trials that finished or are running: what counts against the budget (failed ones do not)."""
    return len(study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING)))


def sampler_seed(sweep: Sweep, existing: int, worker: int) -> int | None:
    """A different, reproducible seed per worker and per rerun (a rerun must not replay the first random points)."""
    seed = sweep.spec.sampler[1].get("seed", 0)
    if seed is None:
        return None
    entropy = [seed, existing, worker]
    if sqlite_path(sweep.storage) is None:  # a shared server: the same command may run on many machines
        entropy.append(zlib.crc32(socket.gethostname().encode()))
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _ignore_further_interrupts() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside, SIGTERM (a scheduler's kill) ends a trial the way Ctrl-C does: marked interrupted, re-run later."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set signal handlers
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_worker(sweep: Sweep, worker: int = 0, workers: int = 1) -> int:
    """Run trials until the study holds ``sweep.trials`` finished or running ones; return how many ran here."""
    # Each trial hands LightningCLI a config dict while sys.argv holds the sweep's flags: expected here.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    if workers > 1:  # K processes share the cores instead of each spinning up all of them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    with sigterm_as_interrupt():
        storage = open_storage(sweep.storage, sweep.heartbeat, own_folder=sweep.out_dir)
        existing = len(optuna.load_study(study_name=sweep.name, storage=storage).get_trials(deepcopy=False))
        study = optuna.load_study(study_name=sweep.name, storage=storage, pruner=sweep.spec.make_pruner(),
                                  sampler=sweep.spec.make_sampler(sampler_seed(sweep, existing, worker)))
        return _loop(sweep, study)


def _loop(sweep: Sweep, study: optuna.Study) -> int:
    lock = FileLock(sweep.lock_path)
    objective = Objective(sweep, lock)
    ran = failures = 0
    while True:
        lock.acquire()
        try:
            recover_left_behind(study, local_only=sqlite_path(sweep.storage) is not None)
            if count_claimed(study) >= sweep.trials:
                return ran
            objective.outcome = None
            study.optimize(objective, n_trials=1, catch=(Exception,))
        finally:
            if lock.is_locked:
                lock.release()
        ran += 1
        outcome = objective.outcome
        if outcome is None or outcome.error is None:
            failures = 0
            continue
        if isinstance(outcome.error, FmnistError):
            raise FmnistError(f"trial {outcome.number} failed: {outcome.error}")
        failures += 1
        if failures >= MAX_FAILURES_IN_A_ROW:
            raise FmnistError(f"{failures} trials in a row failed (last: trial {outcome.number}, "
                              f"{type(outcome.error).__name__}: {outcome.error}); see the tracebacks above.")
