"""Fixtures of the sweep tests: a tiny base config on the synthetic data and a sweep YAML around it."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

# A few batches of ``deep`` on the synthetic set: about a second per trial.
BASE: dict[str, Any] = {
    "seed_everything": 1,
    "trainer": {"max_epochs": 2, "accelerator": "cpu", "devices": 1, "enable_progress_bar": False,
                "enable_model_summary": False, "limit_train_batches": 4, "limit_val_batches": 2,
                "log_every_n_steps": 1,
                "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                           "init_args": {"save_dir": "lightning_logs", "name": "deep"}}},
    "model": {"model_name": "deep", "lr": 0.003, "scheduler": "plateau", "cpu_threads": 1},
    "data": {"batch_size": 16},
    "early_stopping": {"patience": 5},
}

SWEEP: dict[str, Any] = {
    "base": "base.yaml",
    "name": "t",
    "trials": 3,
    "sampler": {"tpe": {"seed": 0, "n_startup_trials": 2}},
    "pruner": "none",
    "space": {"model.lr": {"log_uniform": [1.0e-3, 1.0e-2]},
              "data.batch_size": {"choices": [16, 32]},
              "model.model_kwargs.dropout": {"uniform": [0.0, 0.5]}},
}


@pytest.fixture
def write_sweep(tmp_path: Path, synthetic_data_dir: str) -> Callable[..., Path]:
    """``write_sweep(base_changes={...}, **sweep_keys)`` -> a sweep YAML in tmp_path (base keys merged one level deep)."""

    def write(base_changes: dict[str, Any] | None = None, filename: str = "sweep.yaml", **sweep: Any) -> Path:
        config = copy.deepcopy(BASE)
        config["data"]["data_dir"] = synthetic_data_dir
        config["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path / "lightning_logs")
        for group, values in (base_changes or {}).items():
            if isinstance(values, dict) and isinstance(config.get(group), dict):
                config[group].update(values)
            else:
                config[group] = values
        (tmp_path / "base.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        path = tmp_path / filename
        path.write_text(yaml.safe_dump({**copy.deepcopy(SWEEP), **sweep}, sort_keys=False))
        return path

    return write


@pytest.fixture
def sweep_dirs(tmp_path: Path) -> dict[str, Path]:
    """Where a test's sweep writes: its output folder and the root of its trial folders (both in tmp_path)."""
    return {"out_dir": tmp_path / "out", "logdir": tmp_path / "lightning_logs"}
