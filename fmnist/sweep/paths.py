"""Dotted keys into a training config that may cross a list: ``trainer.callbacks.0.init_args.decay``.

Why the sweep needs its own: a searched or fixed key may point into a list of callbacks, which the training
API's :func:`~fmnist.training.api.set_key` (groups only) does not index.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fmnist.errors import FmnistError
from fmnist.training.api import get_key, set_key


def _split_at_list(config: Mapping[str, Any], dotted: str) -> tuple[Any, str] | None:
    """(the list element a numeric part points at, the rest of the key), or None when no list is crossed."""
    parts = dotted.split(".")
    node: Any = config
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise FmnistError(f"key {dotted}: {'.'.join(parts[:i])} is a list of {len(node)} entries, so the "
                                  f"next part must be an index 0..{len(node) - 1}, got {part!r}.")
            node = node[int(part)]
            if not isinstance(node, dict):
                raise FmnistError(f"key {dotted}: {'.'.join(parts[:i + 1])} is {node!r}, not a group of settings.")
            return node, ".".join(parts[i + 1:])
        if not isinstance(node, Mapping) or part not in node:
            index = next((j for j in range(i + 1, len(parts) - 1) if parts[j].isdigit()), None)
            if index is not None:
                raise FmnistError(f"key {dotted}: the number {parts[index]} indexes a list, but the base config has "
                                  f"no {'.'.join(parts[:index])}; add that list to the base config or fixed: first.")
            return None
        node = node[part]
    return None


def set_path(config: dict[str, Any], dotted: str, value: Any) -> None:
    """:func:`fmnist.training.api.set_key`, plus numeric parts that index into a list of the config."""
    split = _split_at_list(config, dotted)
    if split is None:
        set_key(config, dotted, value)
    else:
        set_path(split[0], split[1], value)


def get_path(config: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    split = _split_at_list(config, dotted)
    return get_key(config, dotted, default) if split is None else get_path(split[0], split[1], default)
