"""Sweep YAMLs: a good one loads with its points checked; each kind of mistake is one sentence before any trial."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from fmnist.errors import FmnistError
from fmnist.sweep.__main__ import main
from fmnist.sweep.space import Param, get_path, load_sweep, parse_param, set_path
from fmnist.training.api import load_config

ROOT = Path(__file__).resolve().parents[2]


def test_a_good_sweep_loads_with_base_fixed_space_and_baseline(write_sweep, tmp_path: Path) -> None:
    path = write_sweep(fixed={"trainer.max_epochs": 3}, baseline={"model.model_kwargs.dropout": 0.5},
                       enqueue=[{"model.lr": 0.002, "data.batch_size": 32, "model.model_kwargs.dropout": 0.1}])
    spec = load_sweep(path)
    assert spec.name == "t" and spec.metric == "val_acc" and spec.direction == "maximize" and spec.trials == 3
    assert spec.base["trainer"]["max_epochs"] == 3 and spec.base["model"]["model_name"] == "deep"
    assert list(spec.space) == ["model.lr", "data.batch_size", "model.model_kwargs.dropout"]
    # the baseline takes the base config's values for the keys it does not name
    assert spec.baseline == {"model.lr": 0.003, "data.batch_size": 16, "model.model_kwargs.dropout": 0.5}
    assert spec.enqueue == [{"model.lr": 0.002, "data.batch_size": 32, "model.model_kwargs.dropout": 0.1}]
    assert not (tmp_path / "lightning_logs").exists()  # the up-front check builds the trainer, writes nothing


def test_params_suggest_inside_their_space() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    params = [parse_param("a", {"log_uniform": [1e-4, 1e-2]}, "x"), parse_param("b", {"int": [2, 10], "step": 2}, "x"),
              parse_param("c", {"choices": [16, 32, 64]}, "x"), parse_param("d", {"uniform": [0.0, 0.5]}, "x")]
    for _ in range(20):
        trial = study.ask()
        values = {p.key: p.suggest(trial) for p in params}
        assert all(p.contains(values[p.key]) for p in params), values
        study.tell(trial, 0.0)
    assert Param("b", "int", 2, 10, 2).contains(4) and not Param("b", "int", 2, 10, 2).contains(5)
    assert not parse_param("c", {"choices": [16, 32]}, "x").contains(16.0)  # a float is not the int choice


def test_list_indices_address_configured_callbacks() -> None:
    config = {"trainer": {"callbacks": [{"class_path": "X", "init_args": {"decay": 0.999}}]}}
    set_path(config, "trainer.callbacks.0.init_args.decay", 0.99)
    assert get_path(config, "trainer.callbacks.0.init_args.decay") == 0.99
    with pytest.raises(FmnistError, match=r"trainer.callbacks is a list of 1 entries.*index 0..0, got '3'"):
        set_path(config, "trainer.callbacks.3.init_args.decay", 0.9)
    with pytest.raises(FmnistError, match=r"the number 0 indexes a list, but the base config has no trainer.callbacks"):
        set_path({"trainer": {}}, "trainer.callbacks.0.init_args.decay", 0.9)


BAD = [
    ({"surprise": 1}, r"unknown key 'surprise'; the keys are base, name"),
    ({"space": {"model.lrr": {"log_uniform": [1e-4, 1e-2]}}},
     r"space key model.lrr = 0.0001 is refused by the training config: .*'lrr'"),
    ({"space": {"model.lr": {"uniform": [0.01, 0.001]}}}, r"space key model.lr has an empty range \[0.01, 0.001\]"),
    ({"space": {"data.batch_size": {"choices": []}}}, r"space key data.batch_size has an empty list of choices"),
    ({"space": {"model.lr": {"loguniform": [1e-4, 1e-2]}}},
     r"space key model.lr has unknown distribution 'loguniform'; write exactly one of uniform, log_uniform"),
    ({"space": {"model.lr": {"log_uniform": [0, 1e-2]}}}, r"log_uniform needs a positive low end, got 0"),
    ({"space": {"model.lr": [1e-4, 1e-2]}}, r"space key model.lr must be a distribution"),
    ({"space": {"trainer.max_epochs": {"int": [1.5, 4]}}}, r"int takes whole numbers"),
    ({"space": {"model.label_smoothing": {"uniform": [0.0, 1.0]}}},
     r"space key model.label_smoothing = 1.0 is refused by the training config: label_smoothing must be in \[0, 1\)"),
    ({"space": {"data.batch_size": {"choices": [16, "big"]}}}, r"space key data.batch_size = 'big' is refused"),
    ({"fixed": {"model.lr": 0.1}}, r"model.lr is both fixed and searched"),
    ({"metric": "test_acc"}, r"metric 'test_acc' is not one of val_acc, val_macro_f1, val_loss \(the sweep never reads"),
    ({"base": "missing.yaml"}, r"base config .*missing.yaml does not exist"),
    ({"pruner": {"median": {"warmup": 2}}}, r"the pruner median refuses these options"),
    ({"sampler": "grid"}, r"unknown sampler 'grid'; use one of tpe, random"),
    ({"baseline": {"model.lr": 0.5}}, r"baseline: model.lr = 0.5 \(given\) lies outside the space"),
    ({"baseline": {"data.batch_size": 64}}, r"baseline: data.batch_size = 64 \(given\) lies outside the space"),
    ({"trials": 0}, r"trials must be a positive whole number, got 0"),
    ({"baseline": {}}, r"baseline: the base config does not set model.model_kwargs.dropout \(a default applies"),
]


@pytest.mark.parametrize(("change", "message"), BAD, ids=[m.split(r"\(")[0][:40] for _, m in BAD])
def test_bad_sweep_yaml_is_one_sentence(write_sweep, change: dict, message: str) -> None:
    path = write_sweep(**change)
    with pytest.raises(FmnistError, match=message) as caught:
        load_sweep(path)
    text = str(caught.value)
    assert "\n" not in text and text.endswith((".", ")")) and str(path) in text


def test_cli_prints_the_sentence_and_exits_2(write_sweep, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_sweep(space={"model.lr": {"uniform": [0.01, 0.001]}})
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: sweep config ") and "empty range" in err and "\n" not in err
    assert main(["--config", str(path), "--workers", "two"]) == 2
    assert "--workers invalid int value: 'two'" in capsys.readouterr().err


def test_fixed_pins_hold_a_key_and_take_it_out_of_the_space(write_sweep) -> None:
    path = write_sweep(baseline={"model.model_kwargs.dropout": 0.5})
    spec = load_sweep(path, pins={"model.model_kwargs.dropout": 0.2, "trainer.max_epochs": 1})
    assert list(spec.space) == ["model.lr", "data.batch_size"] and "model.model_kwargs.dropout" not in spec.baseline
    assert spec.base["model"]["model_kwargs"]["dropout"] == 0.2 and spec.base["trainer"]["max_epochs"] == 1
    assert spec.fingerprint() != load_sweep(path).fingerprint()  # another study


def test_cli_fixed_must_be_key_equals_value(write_sweep, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(write_sweep()), "--fixed", "data.train_subset"]) == 2
    assert "--fixed 'data.train_subset' must be KEY=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["deep", "vggbn", "speedrun"])
def test_shipped_sweeps_load_and_start_from_the_shipped_config(name: str) -> None:
    spec = load_sweep(ROOT / "configs" / "sweeps" / f"{name}.yaml")
    shipped = load_config(ROOT / "configs" / f"{name}.yaml")
    assert spec.base_path == (ROOT / "configs" / f"{name}.yaml") and spec.trials == 20 and spec.metric == "val_acc"
    for key, value in spec.baseline.items():  # the baseline trial is the shipped recipe (at the sweep's budget)
        if get_path(shipped, key) is not None and key != "trainer.max_epochs":
            assert value == get_path(shipped, key), key
    if name == "deep":  # the list: lr, batch size, label smoothing, dropout, EMA decay, epochs
        assert set(spec.space) == {"model.lr", "data.batch_size", "model.label_smoothing", "model.model_kwargs.dropout",
                                   "trainer.callbacks.0.init_args.decay", "trainer.max_epochs"}
        assert get_path(spec.base, "trainer.callbacks.0.class_path").endswith("BatchNormEMA")
