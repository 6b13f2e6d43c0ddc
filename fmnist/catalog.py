"""What every model is, without building it: name, description, source, parameters, input, explained layer.

Why a catalog apart from the builders: ``fmnist models`` (and ``train.py --list-models``) answer at once, without
importing torch; the data module knows a model's input size and the explainers its layer before any network is
built. The builders (:mod:`fmnist.models.registry`) attach to these entries by name; a test builds every entry
and checks its parameter count against the number here. A study's second name for a network is an entry with
``alias_of``: it shares the builder, options and layer of the entry it names.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from fmnist.errors import FmnistError


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    source: str
    params: int | None  # trainable parameters with 10 classes and default options (None: not known before building)
    input_size: int = 28
    channels: int = 1
    target_layer: str | None = None  # layer explanations attach to: the last with a grid >= 8x8 (interpret.layers)
    alias_of: str | None = None  # another entry's name when this one is only a second name for it
    has_recipe: bool = True  # configs/<name>.yaml ships with fmnist (False for a model of one's own)


CATALOG: dict[str, ModelInfo] = {info.name: info for info in (
    ModelInfo("lenet5", "LeNet-5: 2 conv (6/16, 5x5) + avg-pool, dense 120/84", "study B (discussed), LeCun 1998",
              61_706, target_layer="features.conv2"),
    ModelInfo("resnet18", "torchvision ResNet18 on 32x32 RGB (upscaled, grey replicated); GAP + dense 10", "study B",
              11_181_642, input_size=32, channels=3, target_layer="features.layer1"),
    ModelInfo("vggbn", "our recipe: 4 conv (32-32-64-64) + BatchNorm, 2 max-pools, dense 512", "ours", 595_626,
              target_layer="features.conv4"),
    ModelInfo("speedrun", "time-to-accuracy CNN: frozen patch-whitening stem, conv 24/48/96 + BatchNorm + ReLU", "ours",
              57_042, target_layer="features.conv1"),
    ModelInfo("resnet", "small ResNet: conv32, 2 residual blocks, GAP", "study A", 37_898, target_layer="features.block1"),
    ModelInfo("cnn", "3 conv (32/64/128) + 2 max-pool, dense 128", "study A", 241_546, target_layer="features.conv2"),
    ModelInfo("scratch", "2 conv (32/64) + max-pool, dense 128", "study B", 225_034, target_layer="features.conv2"),
    ModelInfo("deep", "3 conv with BatchNorm, GAP, dropout 0.5", "study B", 94_154, target_layer="features.conv2"),
    ModelInfo("cnn2", "table 1 CNN-2: 2 conv + max-pool (same network as scratch)", "study B, table 1", 225_034,
              target_layer="features.conv2", alias_of="scratch"),
    ModelInfo("cnn3", "table 1 CNN-3: 3 conv + max/avg pooling + dropout 0.5 (same network as deep)", "study B, table 1",
              94_154, target_layer="features.conv2", alias_of="deep"),
    ModelInfo("cnn1", "table 1 CNN-1: 2 conv, no pooling, dense 128", "study B, table 1", 4_738_826,
              target_layer="features.conv2"),
    ModelInfo("transfer", "scratch conv base pretrained on MNIST, frozen; new dense head", "study B", 206_218,
              target_layer="features.conv2"),
)}


def add_model_info(info: ModelInfo) -> ModelInfo:
    """A model registered from outside the package (a user's own): its entry joins the catalog."""
    if info.name in CATALOG:
        raise FmnistError(f"a model named {info.name!r} is registered already; pick another name.")
    CATALOG[info.name] = info
    return info


def model_info(name: str) -> ModelInfo:
    try:
        return CATALOG[name]
    except (KeyError, TypeError):
        raise FmnistError(f"Unknown model {name!r}; choose one of: {', '.join(CATALOG)}.") from None


def list_models(pattern: str = "*") -> list[str]:
    """Names matching a shell-style ``pattern`` (e.g. ``"cnn*"``), in catalog order."""
    return [name for name in CATALOG if fnmatch.fnmatch(name, pattern)]


def models_table(pattern: str = "*") -> str:
    """Name, trainable parameters, input shape, source and description of every model (matching ``pattern``)."""
    rows = [("name", "trainable params", "input", "source", "description")]
    for info in (CATALOG[name] for name in list_models(pattern)):
        params = f"{info.params:,}" if info.params is not None else "?"
        rows.append((info.name, params, f"{info.channels}x{info.input_size}x{info.input_size}", info.source,
                     info.description))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
                     for row in rows)
