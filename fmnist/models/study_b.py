"""Study B's Keras models: ``scratch`` (= ``cnn2``), ``deep`` (= ``cnn3``), ``cnn1`` and ``transfer``."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from torch import nn

from fmnist.errors import FmnistError
from fmnist.models.base import FeatureClassifier
from fmnist.models.registry import register_model
from fmnist.serialization import read_checkpoint


def scratch_features() -> nn.Sequential:
    """The conv base that ``transfer`` pretrains on MNIST digits and then freezes."""
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 32, 3), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),  # 26 -> 13
        conv2=nn.Conv2d(32, 64, 3), relu2=nn.ReLU(), pool2=nn.MaxPool2d(2),  # 11 -> 5
    ))


def dense_head(num_classes: int, in_features: int = 64 * 5 * 5) -> nn.Sequential:
    return nn.Sequential(OrderedDict(
        flatten=nn.Flatten(), fc1=nn.Linear(in_features, 128), relu=nn.ReLU(), fc2=nn.Linear(128, num_classes),
    ))


@register_model("scratch")
def scratch(num_classes: int = 10) -> nn.Module:
    return FeatureClassifier(scratch_features(), dense_head(num_classes))


@register_model("deep")
def deep(num_classes: int = 10, batchnorm: bool = True, dropout: float = 0.5) -> nn.Module:
    """``batchnorm=False, dropout=0`` is the study's ablation (val 88.9% vs 91.3%)."""
    def bn(channels: int) -> nn.Module:
        return nn.BatchNorm2d(channels) if batchnorm else nn.Identity()

    return FeatureClassifier(
        features=nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(1, 32, 3), relu1=nn.ReLU(), bn1=bn(32), pool1=nn.MaxPool2d(2),  # 26 -> 13
            conv2=nn.Conv2d(32, 64, 3), relu2=nn.ReLU(), bn2=bn(64), pool2=nn.MaxPool2d(2),  # 11 -> 5
            conv3=nn.Conv2d(64, 128, 3), relu3=nn.ReLU(),  # 3x3
        )),
        classifier=nn.Sequential(OrderedDict(
            gap=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), dropout=nn.Dropout(dropout),
            fc=nn.Linear(128, num_classes),
        )),
    )


@register_model("cnn1")
def cnn1(num_classes: int = 10) -> nn.Module:
    return FeatureClassifier(
        features=nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(1, 32, 3), relu1=nn.ReLU(),  # 26
            conv2=nn.Conv2d(32, 64, 3), relu2=nn.ReLU(),  # 24
        )),
        classifier=dense_head(num_classes, 64 * 24 * 24),
    )


def load_base_weights(features: nn.Module, checkpoint: str | Path) -> None:
    """Copy an MNIST-pretrained ``scratch`` conv base into ``features``.

    Accepts a Lightning checkpoint of a ``scratch`` run (keys ``model.features.*``) or a
    plain state dict of the base (keys ``conv1.weight`` ...).
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FmnistError(f"transfer base checkpoint {path} does not exist; pretrain it with "
                          f"`python train.py fit --config configs/mnist_pretrain.yaml` or let "
                          f"`python train.py --model transfer` do it.")
    state = read_checkpoint(path)
    state = state.get("state_dict", state)
    prefixes = ("model.features.", "features.", "")
    for prefix in prefixes:
        sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        try:
            features.load_state_dict(sub, strict=True)
            return
        except RuntimeError:
            continue
    raise FmnistError(f"{path} does not hold a `scratch` conv base (conv1/conv2 weights); "
                      f"pretrain one with configs/mnist_pretrain.yaml.")


@register_model("transfer")
def transfer(num_classes: int = 10, base_checkpoint: str | None = None, freeze_base: bool = True) -> nn.Module:
    """``base_checkpoint=None`` leaves the base randomly initialised (tests; a warning-free no-op)."""
    features = scratch_features()
    if base_checkpoint is not None:
        load_base_weights(features, base_checkpoint)
    if freeze_base:
        features.requires_grad_(False)
    return FeatureClassifier(features, dense_head(num_classes))
