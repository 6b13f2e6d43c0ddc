"""A training run's recipe as one canonical, flat dictionary: what the run does, not how its keys are spelled.

Why: the results ledger keeps a fingerprint of each record's recipe, and the results page shows a record whose
recipe differs from today's config of its experiment as stale. The fingerprint must change when what a run does
changes (a learning rate, an epoch cap, a model default in code) and must not change when only the spelling
does (a key moved into a group, a model's second name, a setting written out at its default value, where the run
folders go, how many threads compute it). So the recipe is the resolved config, flattened to dotted keys, with
every model and data setting filled in from the classes' own defaults, study aliases mapped to their model, and
the settings that do not change the result (paths, logging, hardware, threads, precision, seed) left out; the
seed and the precision are recorded beside the recipe instead.

Two recipes are compared by their :func:`essential` parts: the settings that differ from today's defaults. A new
option whose default keeps the old behaviour then leaves every earlier recipe current, while a default that
changes in code makes the recipes that relied on the old value differ (their records wrote the old value out).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any

from fmnist.data.datamodule import ImageDataModule
from fmnist.models import get_spec
from fmnist.training.lightning_cli import CHECKPOINT_DEFAULTS, DEFAULT_MAX_EPOCHS, EARLY_STOPPING_DEFAULTS
from fmnist.training.module import Classifier

# Settings that decide where a run goes and how fast it computes, not what it computes.
NOT_RECIPE_PREFIXES = (
    "trainer.logger", "trainer.enable_progress_bar", "trainer.accelerator", "trainer.devices", "trainer.strategy",
    "trainer.num_nodes", "trainer.default_root_dir", "trainer.precision", "trainer.enable_model_summary",
    "ckpt_path", "seed_everything", "data.data_dir", "data.num_workers", "data.eval_batch_size",
    "model.cpu_threads", "model.retain_cpu_memory", "model.channels_last", "model.compile",
    "model.model_kwargs.base_checkpoint", "checkpoint.dirpath", "checkpoint.filename", "checkpoint.save_last",
    "test_after_fit", "data.image_size", "data.channels",
)
# The data module's augmentation settings, under their grouped names (data.augment.<setting>).
AUGMENT_SETTINGS = ("rotation", "zoom", "contrast", "fill_mode", "random_erasing", "hflip", "translate", "aspect",
                    "reframe", "gamma", "blur", "noise")


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and other values are leaves."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and not _is_class_spec(value):
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = _short_class_paths(value)
    return flat


def _is_class_spec(value: Mapping[str, Any]) -> bool:
    return "class_path" in value


def _short_class_paths(value: Any) -> Any:
    """A class named by its own name, not its module's path: moving a callback's module changes no recipe."""
    if isinstance(value, Mapping):
        return {k: (v.rpartition(".")[2] if k == "class_path" and isinstance(v, str) else _short_class_paths(v))
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_short_class_paths(v) for v in value]
    return value


def canonical_key(dotted: str) -> str:
    """One spelling per setting: ``data.rotation`` and ``data.augment.rotation`` are the same setting, as are the
    old switch ``data.augment`` and ``data.augment.enabled``, and ``data.augment_share`` and ``data.augment.share``."""
    if dotted == "data.augment":
        return "data.augment.enabled"
    if dotted == "data.augment_share":
        return "data.augment.share"
    head, _, last = dotted.rpartition(".")
    if head == "data" and last in AUGMENT_SETTINGS:
        return f"data.augment.{last}"
    return dotted


def plain(value: Any) -> Any:
    """JSON-stable values: tuples as lists, mapping keys as strings (``{6: 2.0}`` and ``{"6": 2.0}`` agree)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value) if isinstance(value, float) else value
    return str(value)


def _signature_defaults(cls: type, prefix: str) -> dict[str, Any]:
    defaults = {}
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or parameter.default is inspect.Parameter.empty:
            continue
        value = parameter.default
        if inspect.isclass(type(value)) and hasattr(value, "__dataclass_fields__"):  # a settings group
            defaults.update(flatten({name: {f: getattr(value, f) for f in value.__dataclass_fields__}}, f"{prefix}."))
        else:
            defaults[f"{prefix}.{name}"] = value
    return defaults


def _kept(key: str) -> bool:
    return not any(key == p or key.startswith(p + ".") for p in NOT_RECIPE_PREFIXES)


@functools.cache
def recipe_defaults() -> dict[str, Any]:
    """Today's default of every setting a recipe can hold, canonically spelled (the classes' and the CLI's)."""
    defaults = {**_signature_defaults(Classifier, "model"), **_signature_defaults(ImageDataModule, "data"),
                "trainer.max_epochs": DEFAULT_MAX_EPOCHS,
                **{f"early_stopping.{k}": v for k, v in EARLY_STOPPING_DEFAULTS.items()},
                **{f"checkpoint.{k}": v for k, v in CHECKPOINT_DEFAULTS.items()}}
    return {canonical_key(key): plain(value) for key, value in defaults.items()}


def essential(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of ``recipe`` that differ from today's defaults (for ``pretrain.*`` too): what two recipes
    must agree on to do the same thing."""
    defaults = recipe_defaults()
    return {key: value for key, value in recipe.items()
            if defaults.get(key.removeprefix("pretrain."), _MISSING) != value}


_MISSING = object()


def training_recipe(cfg: Mapping[str, Any], pretrain: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The canonical recipe of a resolved ``fit`` config (see the module docstring).

    ``pretrain``: the resolved config of the MNIST base that ``transfer`` trains on (its recipe is part of this one).
    """
    given = {canonical_key(k): v for k, v in flatten(cfg).items()}
    recipe: dict[str, Any] = {**recipe_defaults(), **given}
    name = recipe.get("model.model_name")
    if isinstance(name, str):
        spec = get_spec(name)
        recipe["model.model_name"] = spec.alias_of or spec.name
    kwargs = recipe.pop("model.model_kwargs", None)  # an empty mapping (no kwargs) is a leaf
    if isinstance(kwargs, Mapping):
        recipe.update(flatten(kwargs, "model.model_kwargs."))
    if pretrain is not None:
        recipe.update({f"pretrain.{k}": v for k, v in training_recipe(pretrain).items()})
    return {key: plain(value) for key, value in sorted(recipe.items()) if _kept(key) and value is not None}
