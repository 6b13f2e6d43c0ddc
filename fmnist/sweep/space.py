"""A sweep's YAML -- base config, budget, search space, sampler, pruner -- read and checked before any trial runs.

Why up front: a typo in a search-space key would otherwise surface as a failed trial minutes (or, on a
cluster, hours) into a sweep. Here the space's lowest and highest values are put through the same
LightningCLI parser and constructors that ``python train.py fit --config`` uses, so an unknown key, a
value of the wrong type or one a constructor refuses is one sentence at start-up.

The keys are the dotted LightningCLI keys a user types (``model.lr``, ``data.batch_size``); a number
addresses a list element, e.g. ``trainer.callbacks.0.init_args.decay`` (the first configured callback).
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml
from jsonargparse import ArgumentError  # what LightningCLI raises for a config it cannot parse

from fmnist.errors import FmnistError
from fmnist.serialization import read_text_capped
from fmnist.sweep.paths import get_path, set_path
from fmnist.training.api import load_config, resolve_config
from fmnist.training.lightning_cli import FmnistCLI

DISTRIBUTIONS = ("uniform", "log_uniform", "int", "log_int", "choices")
METRICS = {"val_acc": "maximize", "val_macro_f1": "maximize", "val_loss": "minimize"}
SAMPLERS: dict[str, type] = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}
PRUNERS: dict[str, type] = {"median": optuna.pruners.MedianPruner,
                            "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
                            "hyperband": optuna.pruners.HyperbandPruner, "none": optuna.pruners.NopPruner}
TOP_KEYS = ("base", "name", "metric", "trials", "sampler", "pruner", "fixed", "space", "baseline", "enqueue", "final")
DEFAULT_SEEDS = (42, 43, 44)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


# -- one searched parameter --------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """One dimension of the space: ``{log_uniform: [1e-4, 1e-2]}``, ``{int: [4, 12], step: 2}``, ``{choices: [...]}``."""

    key: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    @property
    def ends(self) -> tuple[Any, Any]:
        """The lowest and highest value this dimension can take (first and last choice for ``choices``)."""
        return (self.choices[0], self.choices[-1]) if self.kind == "choices" else (self.low, self.high)

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "choices":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind in ("int", "log_int"):
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1),
                                     log=self.kind == "log_int")
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step,
                                   log=self.kind == "log_uniform")

    def contains(self, value: Any) -> bool:
        if self.kind == "choices":
            return any(value == c and type(value) is type(c) for c in self.choices)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.kind in ("int", "log_int") and not float(value).is_integer():
            return False
        if not self.low <= value <= self.high:
            return False
        return self.step is None or math.isclose((value - self.low) / self.step, round((value - self.low) / self.step))

    def describe(self) -> str:
        if self.kind == "choices":
            return f"one of {list(self.choices)}"
        step = f", step {self.step}" if self.step is not None else ""
        return f"{self.kind} in [{self.low}, {self.high}]{step}"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_param(key: str, raw: Any, where: str) -> Param:
    """One ``space:`` entry -> :class:`Param`, or one sentence saying what is wrong with it."""
    example = "e.g. {log_uniform: [1.0e-4, 1.0e-2]}, {int: [4, 12]} or {choices: [64, 128]}"
    if not isinstance(raw, Mapping) or not raw:
        raise FmnistError(f"{where}: space key {key} must be a distribution ({example}), got {raw!r}.")
    kinds = [k for k in raw if k != "step"]
    unknown = [k for k in kinds if k not in DISTRIBUTIONS]
    if unknown or len(kinds) != 1:
        what = f"unknown distribution {unknown[0]!r}" if unknown else f"{len(kinds)} distributions"
        raise FmnistError(f"{where}: space key {key} has {what}; write exactly one of {', '.join(DISTRIBUTIONS)} "
                          f"({example}).")
    kind, value, step = kinds[0], raw[kinds[0]], raw.get("step")
    if kind == "choices":
        if step is not None:
            raise FmnistError(f"{where}: space key {key}: `step` goes with uniform or int, not with choices.")
        if not isinstance(value, list) or not value:
            raise FmnistError(f"{where}: space key {key} has an empty list of choices; give at least one value "
                              f"(two or more to search).")
        bad = [c for c in value if not (c is None or isinstance(c, bool | int | float | str))]
        if bad:
            raise FmnistError(f"{where}: space key {key}: choice {bad[0]!r} is not a plain value (number, string, "
                              f"true/false or null); a whole group of settings cannot be one choice.")
        if len({json.dumps(c) for c in value}) != len(value):
            raise FmnistError(f"{where}: space key {key} lists a choice twice ({value}); list each value once.")
        return Param(key, kind, choices=tuple(value))
    if not isinstance(value, list) or len(value) != 2 or not all(_number(v) for v in value):
        raise FmnistError(f"{where}: space key {key}: {kind} takes [low, high] (two numbers), got {value!r}.")
    low, high = value
    if kind in ("int", "log_int") and not all(isinstance(v, int) for v in value):
        raise FmnistError(f"{where}: space key {key}: {kind} takes whole numbers, got [{low}, {high}]; "
                          f"use uniform for fractions.")
    if not low < high:
        raise FmnistError(f"{where}: space key {key} has an empty range [{low}, {high}]: the low end must be below "
                          f"the high end (a single value belongs under fixed:).")
    if kind.startswith("log") and low <= 0:
        raise FmnistError(f"{where}: space key {key}: {kind} needs a positive low end, got {low}; use uniform or "
                          f"int for ranges that include 0.")
    if step is not None:
        if kind.startswith("log"):
            raise FmnistError(f"{where}: space key {key}: `step` cannot go with {kind} (a log scale has no fixed step).")
        if not _number(step) or step <= 0 or (kind == "int" and not isinstance(step, int)):
            raise FmnistError(f"{where}: space key {key}: step must be a positive {'whole ' if kind == 'int' else ''}"
                              f"number, got {step!r}.")
        if step > high - low:
            raise FmnistError(f"{where}: space key {key}: step {step} is wider than the range [{low}, {high}].")
    return Param(key, kind, low, high, step)


# -- sampler and pruner ------------------------------------------------------------------------------
def _named_kwargs(raw: Any, table: dict[str, type], what: str, where: str) -> tuple[str, dict[str, Any]]:
    """``tpe`` or ``{tpe: {seed: 0}}`` -> ("tpe", {"seed": 0}), checked against the class's signature."""
    if isinstance(raw, str):
        name, kwargs = raw, {}
    elif isinstance(raw, Mapping) and len(raw) == 1:
        name, kwargs = next(iter(raw.items()))
        kwargs = {} if kwargs is None else kwargs
    else:
        raise FmnistError(f"{where}: {what} must be a name or {{name: {{options}}}} (one of {', '.join(table)}), "
                          f"got {raw!r}.")
    if name not in table:
        raise FmnistError(f"{where}: unknown {what} {name!r}; use one of {', '.join(table)}.")
    if not isinstance(kwargs, Mapping):
        raise FmnistError(f"{where}: the {what} {name}'s options must be a mapping, got {kwargs!r}.")
    try:
        inspect.signature(table[name]).bind(**kwargs)
        table[name](**kwargs)
    except (TypeError, ValueError) as exc:
        raise FmnistError(f"{where}: the {what} {name} refuses these options ({exc}); see Optuna's "
                          f"{table[name].__name__}.") from None
    return name, dict(kwargs)


# -- the sweep --------------------------------------------------------------------------------------
@dataclass
class SweepSpec:
    """A checked sweep: what to train (``base`` with ``fixed`` applied), what to search, how, and for how long."""

    path: Path
    name: str
    base_path: Path
    base: dict[str, Any]
    metric: str
    trials: int
    sampler: tuple[str, dict[str, Any]]
    pruner: tuple[str, dict[str, Any]]
    fixed: dict[str, Any]
    space: dict[str, Param]
    baseline: dict[str, Any] | None = None
    enqueue: list[dict[str, Any]] = field(default_factory=list)
    final_seeds: tuple[int, ...] = DEFAULT_SEEDS
    final_overrides: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def direction(self) -> str:
        return METRICS[self.metric]

    def fingerprint(self) -> dict[str, Any]:
        """What a study's trials depend on; a rerun with anything else here is a different study."""
        return json.loads(json.dumps({"base": self.base, "metric": self.metric,
                                      "space": {k: self.raw["space"][k] for k in self.space}}, sort_keys=True))

    def make_sampler(self, seed: int | None = None) -> optuna.samplers.BaseSampler:
        name, kwargs = self.sampler
        kwargs = dict(kwargs)
        if seed is not None:
            kwargs["seed"] = seed
        if name == "tpe":  # parallel workers: count running trials as "bad" so two workers do not pick one point
            kwargs.setdefault("constant_liar", True)
        return SAMPLERS[name](**kwargs)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        name, kwargs = self.pruner
        return PRUNERS[name](**kwargs)

    def point(self, partial: Mapping[str, Any], where: str) -> dict[str, Any]:
        """A full point of the space: ``partial``'s values, the base config's for the other keys (all checked)."""
        unknown = [k for k in partial if k not in self.space]
        if unknown:
            raise FmnistError(f"{where} names {unknown[0]}, which is not a key of space: ({', '.join(self.space)}).")
        values = {}
        for key, param in self.space.items():
            value = partial[key] if key in partial else get_path(self.base, key)
            if key not in partial and value is None:
                raise FmnistError(f"{where}: the base config does not set {key} (a default applies that the sweep "
                                  f"cannot see); give its value there, e.g. {key}: {param.ends[0]!r}.")
            if not param.contains(value):
                source = "given" if key in partial else "the base config's value"
                raise FmnistError(f"{where}: {key} = {value!r} ({source}) lies outside the space ({param.describe()}); "
                                  f"give a value inside it there or widen the space.")
            values[key] = value
        return values


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(read_text_capped(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise FmnistError(f"sweep config {path} is not readable ({getattr(exc, 'strerror', None) or exc}); pass an "
                          f"existing YAML file, e.g. configs/sweeps/deep.yaml.") from None
    except yaml.YAMLError as exc:
        raise FmnistError(f"sweep config {path} is not valid YAML ({str(exc).splitlines()[0]}).") from None
    if not isinstance(raw, dict):
        raise FmnistError(f"sweep config {path} must be a mapping with base:, space: and friends.")
    return raw


def _mapping(raw: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, Mapping):
        raise FmnistError(f"{where}: {key}: must be a mapping of dotted keys to values, got {value!r}.")
    bad = [k for k in value if not isinstance(k, str) or not k or any(not p for p in k.split("."))]
    if bad:
        raise FmnistError(f"{where}: {key}: key {bad[0]!r} is malformed; write it like model.lr.")
    return dict(value)


def _pin(raw: dict[str, Any], pins: Mapping[str, Any]) -> dict[str, Any]:
    """The sweep with ``pins`` added to ``fixed:``; a pinned key leaves the space, the baseline and enqueued points."""
    raw = copy.deepcopy(raw)
    if not isinstance(raw.get("fixed") or {}, Mapping) or not isinstance(raw.get("space") or {}, Mapping):
        return raw  # reported by the checks that follow
    raw["fixed"] = {**(raw.get("fixed") or {}), **pins}
    raw["space"] = {k: v for k, v in (raw.get("space") or {}).items() if k not in pins}
    if isinstance(raw.get("baseline"), Mapping):
        raw["baseline"] = {k: v for k, v in raw["baseline"].items() if k not in pins}
    if isinstance(raw.get("enqueue"), list):
        raw["enqueue"] = [{k: v for k, v in e.items() if k not in pins} if isinstance(e, Mapping) else e
                          for e in raw["enqueue"]]
    return raw


def load_sweep(path: str | Path, *, name: str | None = None, pins: Mapping[str, Any] | None = None,
               check: bool = True) -> SweepSpec:
    """Read and check a sweep YAML (``check``: also run the space's ends through the training config's parser).

    ``pins`` (``--fixed key=value``) hold keys at one value for this run, searched or not: e.g. a quick
    smoke run of a shipped sweep on a data subset. They change the study's fingerprint: give it a --name.
    """
    path = Path(path).resolve()
    raw = _read_yaml(path)
    if pins:
        raw = _pin(raw, pins)
    where = f"sweep config {path}"
    unknown = [k for k in raw if k not in TOP_KEYS]
    if unknown:
        raise FmnistError(f"{where}: unknown key {unknown[0]!r}; the keys are {', '.join(TOP_KEYS)}.")
    if not isinstance(raw.get("base"), str):
        raise FmnistError(f"{where} needs base: the training config to tune (a path relative to the sweep file, "
                          f"e.g. base: ../deep.yaml).")
    base_path = (path.parent / raw["base"]).resolve()
    if not base_path.is_file():
        raise FmnistError(f"{where}: base config {base_path} does not exist; point base: at a training YAML "
                          f"(relative to the sweep file).")
    name = name or raw.get("name") or f"{path.stem}-sweep"
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise FmnistError(f"{where}: sweep name {name!r} must be letters, digits, '.', '_' or '-' (it names folders).")
    metric = raw.get("metric", "val_acc")
    if metric not in METRICS:
        raise FmnistError(f"{where}: metric {metric!r} is not one of {', '.join(METRICS)} (the sweep never reads the "
                          f"test set).")
    trials = raw.get("trials", 20)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise FmnistError(f"{where}: trials must be a positive whole number, got {trials!r}.")
    fixed = _mapping(raw, "fixed", where)
    space_raw = _mapping(raw, "space", where)
    if not space_raw:
        raise FmnistError(f"{where} has no space: to search; add e.g. space: {{model.lr: {{log_uniform: "
                          f"[1.0e-4, 1.0e-2]}}}}.")
    both = [k for k in space_raw if k in fixed]
    if both:
        raise FmnistError(f"{where}: {both[0]} is both fixed and searched; keep it in one of fixed: and space:.")
    space = {key: parse_param(key, value, where) for key, value in space_raw.items()}
    base = resolve_config(config=load_config(base_path))
    base.pop("ckpt_path", None)  # a sweep starts every trial fresh
    for key, value in fixed.items():
        try:
            set_path(base, key, value)
        except FmnistError as exc:
            raise FmnistError(f"{where}: fixed: {exc}") from None
    sampler = _named_kwargs(raw.get("sampler", "tpe"), SAMPLERS, "sampler", where)
    pruner = _named_kwargs(raw.get("pruner", "median"), PRUNERS, "pruner", where)
    final = raw.get("final") or {}
    if not isinstance(final, Mapping) or any(k not in ("seeds", "overrides") for k in final):
        raise FmnistError(f"{where}: final: takes seeds: [..] and overrides: {{..}}, got {final!r}.")
    seeds = final.get("seeds", list(DEFAULT_SEEDS))
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                           and s >= 0 for s in seeds):
        raise FmnistError(f"{where}: final.seeds must be a list of whole numbers >= 0, got {seeds!r}.")
    spec = SweepSpec(path=path, name=name, base_path=base_path, base=base, metric=metric, trials=trials,
                     sampler=sampler, pruner=pruner, fixed=fixed, space=space,
                     final_seeds=tuple(seeds), final_overrides=_mapping(final, "overrides", f"{where}: final"),
                     raw=raw)
    for key in space:
        try:
            get_path(base, key)
        except FmnistError as exc:
            raise FmnistError(f"{where}: space: {exc}") from None
    baseline = raw.get("baseline")
    if baseline is not None:
        if not isinstance(baseline, Mapping):
            raise FmnistError(f"{where}: baseline: must be a mapping (empty: the base config's own values), "
                              f"got {baseline!r}.")
        spec.baseline = spec.point(baseline, f"{where}: baseline")
    enqueue = raw.get("enqueue") or []
    if not isinstance(enqueue, list) or not all(isinstance(e, Mapping) for e in enqueue):
        raise FmnistError(f"{where}: enqueue: must be a list of mappings (points of the space to try first).")
    spec.enqueue = [spec.point(e, f"{where}: enqueue[{i}]") for i, e in enumerate(enqueue)]
    if check:
        check_space(spec)
    return spec


# -- the up-front check through the training config's own parser ------------------------------------
def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."


def check_config(config: dict[str, Any]) -> str | None:
    """None when LightningCLI parses and builds ``config`` (model, data module, trainer); else why not.

    Nothing is trained and nothing is written (the logger creates its folder only when a run logs).
    """
    quiet = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric", "lightning_fabric")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:  # "Seed set", "GPU available", tips: said again when the trials start
        logger.setLevel(logging.WARNING)
    try:
        FmnistCLI(args=copy.deepcopy(config), run=False, parser_kwargs={"default_env": False, "exit_on_error": False})
    except (ArgumentError, FmnistError, TypeError, ValueError) as exc:
        return _first_line(exc)
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)
    return None


def with_values(spec: SweepSpec, values: Mapping[str, Any]) -> dict[str, Any]:
    config = copy.deepcopy(spec.base)
    for key, value in values.items():
        set_path(config, key, value)
    return config


def check_space(spec: SweepSpec) -> None:
    """The base config, then the space's low ends and high ends together; a refusal names its key."""
    where = f"sweep config {spec.path}"
    problem = check_config(spec.base)
    if problem:
        raise FmnistError(f"{where}: the base config {spec.base_path.name} with fixed: applied is refused: {problem}")
    for end, label in ((0, "low"), (1, "high")):
        values = {key: param.ends[end] for key, param in spec.space.items()}
        problem = check_config(with_values(spec, values))
        if problem is None:
            continue
        for key, value in values.items():  # which key? one at a time
            alone = check_config(with_values(spec, {key: value}))
            if alone:
                raise FmnistError(f"{where}: space key {key} = {value!r} is refused by the training config: {alone} "
                                  f"(keys are the ones `python train.py fit --help` lists).")
        raise FmnistError(f"{where}: the space's {label} ends together are refused by the training config: {problem}")
