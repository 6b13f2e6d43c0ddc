"""One sweep end to end: open (or continue) the study, run K local workers on it, write the winner and the report.

Rerunning the same command continues the study: finished trials are kept, interrupted ones re-run, and
the budget counts finished trials. A rerun with a different base config, space or metric is refused
(naming the first difference) rather than mixing two experiments in one study; ``--trials`` may change.
"""

from __future__ import annotations

import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from filelock import FileLock

from fmnist.errors import FmnistError
from fmnist.sweep.final import final_fit, read_final, write_best
from fmnist.sweep.report import summary, write_report
from fmnist.sweep.space import SweepSpec
from fmnist.sweep.storage import DEFAULT_HEARTBEAT, default_storage, display_url, open_storage
from fmnist.sweep.study import Sweep, run_worker, sigterm_as_interrupt
from fmnist.training.api import log_root

DEFAULT_OUT = Path("runs") / "sweeps"
INTERRUPT_GRACE = 5.0  # seconds the workers get to end their trials after Ctrl-C before they are sent SIGTERM


@dataclass
class SweepResult:
    sweep: Sweep
    summary: dict[str, Any]
    best_yaml: Path | None
    report: dict[str, Path]
    final: dict[str, Any] | None
    ran: int


def make_sweep(spec: SweepSpec, *, trials: int | None = None, storage: str | None = None,
               out_dir: str | Path | None = None, logdir: str | Path | None = None,
               heartbeat: int = DEFAULT_HEARTBEAT) -> Sweep:
    """Where a sweep lives: ``runs/sweeps/<name>/`` (study.db, best.yaml, report), trials under the base's logdir."""
    if trials is not None and trials < 1:
        raise FmnistError(f"--trials must be at least 1, got {trials}.")
    out = Path(out_dir if out_dir is not None else DEFAULT_OUT / spec.name).resolve()
    if out.exists() and not out.is_dir():
        raise FmnistError(f"--out {out} is a file; pass a folder for the sweep's database and report.")
    return Sweep(spec=spec, storage=storage or default_storage(out), out_dir=out,
                 logdir=Path(logdir if logdir is not None else log_root(spec.base)).resolve(),
                 trials=trials or spec.trials, heartbeat=heartbeat)


def _first_difference(old: Any, new: Any, path: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                return _first_difference(old.get(key), new.get(key), f"{path}.{key}" if path else key)
    return f"{path or 'the whole config'}: {old!r} then, {new!r} now"


OWN_FILES = frozenset({"study.db", "study.db-wal", "study.db-shm", "study.db.lock", "study.lock"})


def open_study(sweep: Sweep, create: bool = True) -> optuna.Study:
    """Create the study (first run: queue the baseline and enqueued points) or continue it, if it is the same sweep.

    The output folder is made only once the storage answered; a sweep refused here leaves no folder it made.
    """
    fresh = not sweep.out_dir.exists()
    try:
        return _open_study(sweep, create)
    except FmnistError:
        if fresh and sweep.out_dir.is_dir() and {p.name for p in sweep.out_dir.iterdir()} <= OWN_FILES:
            shutil.rmtree(sweep.out_dir, ignore_errors=True)
        raise


def _open_study(sweep: Sweep, create: bool) -> optuna.Study:
    storage = open_storage(sweep.storage, sweep.heartbeat, own_folder=sweep.out_dir)
    sweep.out_dir.mkdir(parents=True, exist_ok=True)
    spec = sweep.spec
    with FileLock(sweep.lock_path):
        if create:
            study = optuna.create_study(storage=storage, study_name=sweep.name, direction=spec.direction,
                                        load_if_exists=True)
        else:
            try:
                study = optuna.load_study(study_name=sweep.name, storage=storage)
            except KeyError:
                raise FmnistError(f"no study {sweep.name} in {display_url(sweep.storage)}; run the sweep first "
                                  f"(or pass the --storage / --name it ran with).") from None
        recorded, fingerprint = study.user_attrs.get("sweep"), spec.fingerprint()
        if recorded is None:
            study.set_user_attr("sweep", fingerprint)
            study.set_user_attr("sweep_config", spec.raw)
        elif recorded != fingerprint:
            raise FmnistError(f"study {sweep.name} in {display_url(sweep.storage)} was started with another sweep "
                              f"config ({_first_difference(recorded, fingerprint)}); restore it, or start a new "
                              f"study with --name.")
        if create and not study.get_trials(deepcopy=False):
            leftovers = sorted((sweep.logdir / sweep.name).glob("trial_*"))
            if leftovers:
                raise FmnistError(f"{leftovers[0]} is left from an earlier sweep named {sweep.name} whose study is "
                                  f"not in {display_url(sweep.storage)}; move those folders away, pass that study's "
                                  f"--storage, or pick another --name.")
            if spec.baseline is not None:
                study.enqueue_trial(spec.baseline, user_attrs={"role": "baseline"})
            for point in spec.enqueue:
                study.enqueue_trial(point, user_attrs={"role": "enqueued"}, skip_if_exists=True)
    return study


def _run_workers(sweep: Sweep, workers: int) -> int:
    """``workers`` spawned processes on the same study (spawn: a fresh interpreter, no forked torch threads)."""
    ran, errors = 0, []
    context = multiprocessing.get_context("spawn")
    with sigterm_as_interrupt(), ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(run_worker, sweep, i, workers) for i in range(workers)]
        try:
            for future in futures:
                try:
                    ran += future.result()
                except FmnistError as exc:
                    errors.append(exc)
                except BrokenProcessPool:
                    errors.append(FmnistError("a worker process died (killed, or out of memory); run the same "
                                              "command again to resume (its trial is re-run)."))
        except KeyboardInterrupt:
            # Ctrl-C reached the workers too: let them end their trials as interrupted. A SIGTERM to this process
            # alone did not: pass it on (each worker then ends its trial the same way).
            _, pending = wait(futures, timeout=INTERRUPT_GRACE)
            if pending:
                for child in multiprocessing.active_children():
                    child.terminate()
            raise
    if errors:
        raise errors[0]
    return ran


def write_outputs(sweep: Sweep, study: optuna.Study, final: dict[str, Any] | None = None,
                  ran: int = 0) -> SweepResult:
    final = final or read_final(sweep)
    return SweepResult(sweep=sweep, summary=summary(sweep, study), best_yaml=write_best(sweep, study),
                       report=write_report(sweep, study, final), final=final, ran=ran)


def run_sweep(sweep: Sweep, *, workers: int = 1, final: bool = False,
              seeds: list[int] | tuple[int, ...] | None = None) -> SweepResult:
    """Run (or continue) the sweep with ``workers`` local processes, then write best.yaml, the report, a final fit."""
    if workers < 1:
        raise FmnistError(f"--workers must be at least 1, got {workers}.")
    study = open_study(sweep)
    ran = run_worker(sweep) if workers == 1 else _run_workers(sweep, workers)
    result = write_outputs(sweep, study, ran=ran)
    if final:
        summary_ = final_fit(sweep, study, list(seeds or sweep.spec.final_seeds))
        result = write_outputs(sweep, study, final=summary_, ran=ran)
    return result
