"""After the sweep: the winner as a YAML that ``python train.py fit --config`` accepts, and the optional final fit.

The final fit is where the test set is read, once per seed: the winning settings are retrained on the
training *and* validation images (:class:`fmnist.sweep.callbacks.TrainOnValidation`) for as many epochs
as the winning trial needed to reach its kept checkpoint, without early stopping or checkpoint selection
(there is no unseen validation data left to select on), and the final model is tested.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState

from fmnist.errors import FmnistError
from fmnist.files import write_json_atomic, write_text_atomic
from fmnist.runs import read_metrics
from fmnist.serialization import read_json_capped
from fmnist.sweep.space import set_path
from fmnist.sweep.storage import display_url
from fmnist.sweep.study import Sweep, trial_config
from fmnist.training.api import fit, get_key, set_key

BEST_FILE = "best.yaml"
FINAL_FILE = "final.json"
TRAIN_ON_VALIDATION = "fmnist.sweep.callbacks.TrainOnValidation"


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The best finished (not pruned) trial, or None before the first one."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    return study.best_trial


def _plain(config: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(config))  # tuples -> lists: what yaml.safe_dump and LightningCLI both take


def best_config(sweep: Sweep, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The trial's complete config, as a normal run: tested after fit, logged to ``<logdir>/<sweep>-best``."""
    config = trial_config(sweep, trial.params, trial.number)
    config.pop("test_after_fit", None)
    set_key(config, "trainer.logger.init_args.name", f"{sweep.name}-best")
    get_key(config, "trainer.logger.init_args").pop("version", None)
    return _plain(config)


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` so that a reader (a report, another worker) never sees half a file."""
    return write_text_atomic(path, text)


def write_best(sweep: Sweep, study: optuna.Study) -> Path | None:
    """``<out>/best.yaml`` for the best trial so far (None while no trial has finished)."""
    trial = best_trial(study)
    if trial is None:
        return None
    path = sweep.out_dir / BEST_FILE
    params = ", ".join(f"{k}={v!r}" for k, v in trial.params.items())
    header = [f"# Best trial {trial.number} of sweep {sweep.name}: {sweep.spec.metric} = {trial.value:.4f} "
              f"(validation; the sweep never read the test set).",
              f"# Sweep config: {sweep.spec.path}; study: {display_url(sweep.storage)}",
              f"# Parameters: {params}",
              f"# Trial run: {trial.user_attrs.get('run_dir')}",
              f"# Train and test it: python train.py fit --config {path}", ""]
    return write_atomic(path, "\n".join(header) + yaml.safe_dump(best_config(sweep, trial), sort_keys=False))


def final_config(sweep: Sweep, trial: optuna.trial.FrozenTrial, seed: int) -> dict[str, Any]:
    """The winner retrained on train+val with ``seed``: fixed epochs, no early stopping, the last epoch tested."""
    config = best_config(sweep, trial)
    for key, value in sweep.spec.final_overrides.items():
        set_path(config, key, value)
    epochs = trial.user_attrs.get("best_epoch")
    if "trainer.max_epochs" not in sweep.spec.final_overrides and epochs:
        set_key(config, "trainer.max_epochs", int(epochs))
    max_epochs = get_key(config, "trainer.max_epochs") or 1000
    set_key(config, "early_stopping.patience", int(max_epochs) + 1)  # never fires
    set_key(config, "checkpoint.monitor", None)  # keep the last epoch: "best" on seen images means nothing
    callbacks = get_key(config, "trainer.callbacks") or []
    callbacks = [callbacks] if isinstance(callbacks, dict) else list(callbacks)
    if not any(isinstance(c, dict) and c.get("class_path") == TRAIN_ON_VALIDATION for c in callbacks):
        callbacks.append({"class_path": TRAIN_ON_VALIDATION})
    set_key(config, "trainer.callbacks", callbacks)
    set_key(config, "seed_everything", seed)
    set_key(config, "trainer.logger.init_args.name", f"{sweep.name}-final")
    set_key(config, "trainer.logger.init_args.version", f"trial_{trial.number}_seed_{seed}")
    return config


def final_fit(sweep: Sweep, study: optuna.Study, seeds: list[int] | tuple[int, ...]) -> dict[str, Any]:
    """Retrain the best trial per seed (a seed already tested is not run, nor tested, again); write final.json."""
    trial = best_trial(study)
    if trial is None:
        raise FmnistError(f"sweep {sweep.name} has no finished trial to refit yet; run the sweep first.")
    runs = []
    for seed in seeds:
        config = final_config(sweep, trial, seed)
        run_dir = sweep.logdir / f"{sweep.name}-final" / f"trial_{trial.number}_seed_{seed}"
        metrics = read_metrics(run_dir)
        if not metrics or metrics.get("test_acc") is None:
            metrics = fit(config=config).metrics or {}
        runs.append({"seed": seed, "run_dir": str(run_dir), "test_acc": metrics.get("test_acc"),
                     "test_macro_f1": metrics.get("test_macro_f1"), "n_train": metrics.get("n_train"),
                     "epochs": metrics.get("epochs"), "wall_seconds": metrics.get("wall_seconds")})
    accs = [r["test_acc"] for r in runs if r["test_acc"] is not None]
    summary = {"sweep": sweep.name, "trial": trial.number, "params": trial.params, "metric": sweep.spec.metric,
               "trial_value": trial.value, "epochs": get_key(final_config(sweep, trial, seeds[0]), "trainer.max_epochs"),
               "runs": runs,
               "test_acc": {"mean": statistics.fmean(accs) if accs else None,
                            "std": statistics.stdev(accs) if len(accs) > 1 else 0.0 if accs else None}}
    write_json_atomic(sweep.out_dir / FINAL_FILE, summary)
    return summary


def read_final(sweep: Sweep) -> dict[str, Any] | None:
    path = sweep.out_dir / FINAL_FILE
    try:
        return read_json_capped(path) if path.is_file() else None
    except (OSError, ValueError):
        return None
