"""Name -> model builder, filled by the ``@register_model`` decorator (timm-style).

Models are plain ``nn.Module``s; Lightning never appears here. What each model is (description, input, explained
layer, parameter count) lives in :mod:`fmnist.catalog`, which needs no torch; a builder attaches to its
catalog entry by name, and a study's alias (``cnn2``) uses the builder of the entry it names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from fmnist.catalog import CATALOG, ModelInfo, add_model_info, model_info
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


_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str, *, description: str | None = None, source: str | None = None, input_size: int = 28,
                   channels: int = 1, target_layer: str | None = None
                   ) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Attach ``builder`` to the catalog entry ``name``; ``builder(num_classes=10, **kwargs)`` returns an ``nn.Module``.

    A model of your own (not in the catalog) gives its ``description`` and ``source`` here and joins the catalog.
    """

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BUILDERS:
            raise FmnistError(f"a model named {name!r} is registered already; pick another name.")
        if name not in CATALOG:
            if description is None or source is None:
                raise FmnistError(f"model {name!r} is not in the catalog (fmnist/catalog.py): give @register_model "
                                  f"description= and source= to add it.")
            add_model_info(ModelInfo(name, description, source, None, input_size, channels, target_layer,
                                     has_recipe=False))
        _BUILDERS[name] = builder
        return builder

    return decorate


def get_spec(name: str) -> ModelSpec:
    info = model_info(name)
    builder = _BUILDERS.get(info.alias_of or name)
    if builder is None:
        raise FmnistError(f"model {name!r} is in the catalog but has no builder; register one with @register_model.")
    return ModelSpec(info.name, builder, info.description, info.source, info.input_size, info.channels,
                     info.target_layer, info.alias_of)


def builders() -> dict[str, Callable[..., nn.Module]]:
    """Every registered builder by name (aliases excluded)."""
    return dict(_BUILDERS)



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
