"""Speed records of the results ledger: time to accuracy of the speedrun recipes, and the ratio to Keras.

The benchmark scripts (``benchmarks/time_to_accuracy.py``, ``benchmarks/epoch_time.py``) write one record per
timed run or per side-by-side comparison into ``results/speed/``; README's speed table is generated from the
records that are of today's recipes. A time-to-accuracy record is current when its configuration's essential
settings (:func:`fmnist.training.recipe.essential`) are today's; a Keras comparison when its protocol is.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fmnist.errors import FmnistError
from fmnist.ledger import make_record, provenance, read_records
from fmnist.training.api import resolve_config
from fmnist.training.recipe import essential, training_recipe

SPEED_BUDGET = "speed"
TIME_TO_ACCURACY = "time_to_accuracy"
KERAS_RATIO = "keras_ratio"
KERAS_GOAL = 0.35  # issue 32: our deep epoch at most 0.35x the studies' Keras code's (median of 3 pairs)


def time_to_accuracy_recipe(config: str | Path, target: float, train_on_validation: bool,
                            overrides: Mapping[str, Any] | None = None, warm_server: bool = False) -> dict[str, Any]:
    """What a timed run does: the config's training recipe, the target it is timed against, the images it trains on,
    and (only when true) that it started in a warm server."""
    recipe = training_recipe(resolve_config(config=config, overrides=overrides or {}))
    return {**recipe, "benchmark.target": target, "benchmark.train_on_validation": train_on_validation,
            **({"benchmark.warm_server": True} if warm_server else {})}


def keras_recipe(model: str, batch_size: int, precision: str, epochs: int) -> dict[str, Any]:
    """The side-by-side protocol: study B's model, batch, Adam, precision, epochs per run (median of 2..N)."""
    return {"model": model, "batch_size": batch_size, "optimizer": "adam", "lr": 0.001, "precision": precision,
            "epochs": epochs, "augment": False}


def machine_tag(device_name: str, precision: str | None) -> str:
    """``2 CPU cores (Intel Xeon)``, ``bf16-mixed`` -> ``intel-xeon-bf16-mixed``: which kind of machine timed a run.

    Why in the record's name: a time only means something on its machine (float32 on a CPU without native bf16
    is several times slower), so two machines' timings of one seed sit side by side instead of replacing each other.
    """
    inner = device_name[device_name.find("(") + 1:device_name.rfind(")")] if "(" in device_name else device_name
    inner = inner.replace("(R)", "").replace("(TM)", "")
    words = "".join(c.lower() if c.isalnum() else " " for c in f"{inner} {precision or ''}").split()
    return "-".join(words)


def time_to_accuracy_record(*, name: str, config: str, seed: int, target: float, train_on_validation: bool,
                            overrides: Mapping[str, Any] | None, metrics: Mapping[str, Any], device: str,
                            device_name: str, command: str, run_metrics: Mapping[str, Any],
                            warm_server: bool = False) -> dict[str, Any]:
    """One timed training process: ``metrics`` holds process seconds, test accuracy and the loop's seconds.

    ``warm_server``: the process handed itself to a warm server (``fmnist warm start``), so its seconds do not
    include the library imports; such runs make rows of their own.
    """
    tag = machine_tag(device_name, run_metrics.get("precision"))
    return make_record(
        kind=TIME_TO_ACCURACY, budget=SPEED_BUDGET, experiment=name,
        item=f"s{seed}" + ("-all" if train_on_validation else "") + ("-warm" if warm_server else "") + f"-{tag}",
        device=device,
        recipe=time_to_accuracy_recipe(config, target, train_on_validation, overrides, warm_server),
        metrics={"target": target, **metrics}, seed=seed, config=str(config),
        overrides=dict(overrides or {}),
        provenance=provenance(device_name=device_name, commit=run_metrics.get("git_commit"), command=command,
                              precision=run_metrics.get("precision"), threads=run_metrics.get("machine"),
                              seconds=metrics.get("process_seconds")))


def keras_ratio_record(*, day: str, model: str, batch_size: int, precision: str, epochs: int,
                       pairs: Sequence[Mapping[str, Any]], device: str, device_name: str, command: str,
                       keras_versions: Mapping[str, Any]) -> dict[str, Any]:
    """Ours against Keras, run alternately on one machine: one record per day and precision."""
    ratios = [p["ratio"] for p in pairs]
    return make_record(
        kind=KERAS_RATIO, budget=SPEED_BUDGET, experiment="keras-ratio", item=f"{day}-{precision}", device=device,
        recipe=keras_recipe(model, batch_size, precision, epochs),
        metrics={"pairs": list(pairs), "median_ratio": statistics.median(ratios), "goal": KERAS_GOAL,
                 "ours_median": statistics.median(p["ours"] for p in pairs),
                 "keras_median": statistics.median(p["keras"] for p in pairs), "precision": precision,
                 "day": day},
        provenance=provenance(device_name=device_name, command=command, keras=dict(keras_versions),
                              seconds=sum(p["ours"] + p["keras"] for p in pairs) * epochs))


def is_current(record: Mapping[str, Any]) -> bool:
    """Whether a speed record is of today's recipe (its config read again today)."""
    if record["kind"] == TIME_TO_ACCURACY:
        metrics = record["metrics"]
        try:
            today = time_to_accuracy_recipe(record["config"], metrics["target"],
                                            bool(record["recipe"].get("benchmark.train_on_validation")),
                                            record.get("overrides"),
                                            bool(record["recipe"].get("benchmark.warm_server")))
        except FmnistError:  # a config that is gone or no longer resolves: the record is stale, the page still written
            return False
        return essential(record["recipe"]) == essential(today)
    if record["kind"] == KERAS_RATIO:
        recipe = record["recipe"]
        return recipe == keras_recipe(recipe["model"], recipe["batch_size"], recipe["precision"], recipe["epochs"])
    return False


def speed_records(ledger: Path) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """``(current, stale)`` records of the speed benchmarks."""
    if not (Path(ledger) / SPEED_BUDGET).is_dir():
        return [], []
    current, stale = [], []
    for record in read_records(ledger, SPEED_BUDGET):
        (current if is_current(record) else stale).append(record)
    return current, stale
