"""Values typed on a command line, read into Python: dotted LightningCLI settings and ``NAME=VALUE`` pairs.

Light (yaml and ast only): the options modules use it before any heavy import.
"""

from __future__ import annotations

import ast
from typing import Any

import yaml

from fmnist.errors import FmnistError


def dotted_overrides(rest: list[str]) -> dict[str, Any]:
    """``["--trainer.max_epochs", "3", "--data.augment.enabled=false"]`` -> ``{"trainer.max_epochs": 3, "data.augment.enabled": False}``.

    Values are read as YAML scalars or flow collections, as LightningCLI reads them.
    """
    overrides: dict[str, Any] = {}
    i = 0
    while i < len(rest):
        arg = rest[i]
        if not arg.startswith("--") or len(arg) < 3:
            raise FmnistError(f"unexpected argument {arg!r}; settings are written --group.key VALUE "
                              f"(e.g. --trainer.max_epochs 3).")
        key, sep, value = arg[2:].partition("=")
        if not sep:
            if i + 1 >= len(rest) or (rest[i + 1].startswith("--") and len(rest[i + 1]) > 2):
                raise FmnistError(f"--{key} needs a value (e.g. --{key} VALUE).")
            value = rest[i + 1]
            i += 1
        try:
            parsed = yaml.safe_load(value) if value != "" else ""
        except yaml.YAMLError:
            parsed = value
        if key.endswith("+"):  # LightningCLI's append (``--trainer.callbacks+=A --trainer.callbacks+=B``): keep all
            previous = overrides.get(key, [])
            overrides[key] = [*previous, *(parsed if isinstance(parsed, list) else [parsed])]
        else:
            overrides[key] = parsed
        i += 1
    return overrides


def pins(items: list[str]) -> dict[str, object]:
    """``["data.train_subset=2000"]`` -> ``{"data.train_subset": 2000}`` (values read as YAML, as train.py does)."""
    bad = [item for item in items if "=" not in item or not item.split("=", 1)[0]]
    if bad:
        raise FmnistError(f"--fixed {bad[0]!r} must be KEY=VALUE, e.g. --fixed data.train_subset=2000.")
    return dotted_overrides([f"--{item}" for item in items])


def parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """``["C=5", "gamma=auto", "hidden_layer_sizes=(256,128)"]`` -> ``{"C": 5, "gamma": "auto", ...}``."""
    params: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise FmnistError(f"--param expects NAME=VALUE (e.g. --param C=5), got {pair!r}.")
        try:
            value = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            value = raw.strip()  # a bare word such as auto, rbf or entropy
        params[key.strip()] = value
    return params
