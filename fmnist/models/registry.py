"""Name -> model builder table, filled by the ``@register_model`` decorator (timm-style).

Models are plain ``nn.Module``s; Lightning never appears here. Each entry records what the
rest of the code needs to know without building the model: the input it expects (so the
data module can resize / replicate channels) and the layer explanations attach to (Grad-CAM).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from fmnist.errors import FmnistError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., nn.Module]
    description: str
    source: str
    input_size: int = 28
    channels: int = 1
    target_layer: str | None = None  # layer explanations attach to: the last with a grid >= 8x8 (interpret.layers)
    alias_of: str | None = None  # another entry's name when this one is only a second name for it


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, *, description: str, source: str, input_size: int = 28, channels: int = 1,
                   target_layer: str | None = None) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``builder`` under ``name``; ``builder(num_classes=10, **kwargs)`` returns an ``nn.Module``."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(name, builder, description, source, input_size, channels, target_layer)
        return builder

    return decorate


def register_alias(alias: str, target: str, *, description: str, source: str) -> None:
    """A second name for a registered model (study B's table names): same builder, options and layer."""
    if alias in _REGISTRY:
        raise ValueError(f"model {alias!r} is registered twice")
    spec = get_spec(target)
    _REGISTRY[alias] = ModelSpec(alias, spec.builder, description, source, spec.input_size, spec.channels,
                                 spec.target_layer, alias_of=target)


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style ``pattern`` (e.g. ``"cnn*"``), in registration order."""
    return [name for name in _REGISTRY if fnmatch.fnmatch(name, pattern)]


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise FmnistError(f"Unknown model {name!r}; choose one of: {', '.join(_REGISTRY)}.") from None


def create_model(name: str, num_classes: int = 10, **kwargs) -> nn.Module:
    """Build a registered model; unknown names and bad options are one clear sentence."""
    spec = get_spec(name)
    try:
        return spec.builder(num_classes=num_classes, **kwargs)
    except TypeError as exc:
        raise FmnistError(f"Bad option for model {name!r}: {exc}.") from None


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_parameters_keras(model: nn.Module) -> int:
    """Keras' "Total params": every weight plus BatchNorm running mean/variance."""
    buffers = sum(b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var")))
    return count_parameters(model, trainable_only=False) + buffers
