"""Classic architectures the studies discuss: LeNet-5 and torchvision's ResNet18."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn
from torchvision.models import ResNet18_Weights
from torchvision.models import resnet18 as tv_resnet18

from fmnist.errors import FmnistError
from fmnist.models.base import FeatureClassifier
from fmnist.models.registry import register_model


@register_model("lenet5")
def lenet5(num_classes: int = 10) -> nn.Module:
    return FeatureClassifier(
        features=nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(1, 6, 5, padding=2), act1=nn.Tanh(), pool1=nn.AvgPool2d(2),  # 28 -> 14
            conv2=nn.Conv2d(6, 16, 5), act2=nn.Tanh(), pool2=nn.AvgPool2d(2),  # 10 -> 5
        )),
        classifier=nn.Sequential(OrderedDict(
            flatten=nn.Flatten(), fc1=nn.Linear(16 * 5 * 5, 120), act3=nn.Tanh(),
            fc2=nn.Linear(120, 84), act4=nn.Tanh(), fc3=nn.Linear(84, num_classes),
        )),
    )


def _no_inplace(module: nn.Module) -> nn.Module:
    """torchvision's ReLUs are in-place, which breaks Captum's hooks; swap them for plain ones."""
    for child in module.modules():
        if isinstance(child, nn.ReLU):
            child.inplace = False
    return module


IMAGENET_WEIGHTS = ResNet18_Weights.IMAGENET1K_V1


def imagenet_weights_problem() -> str | None:
    """Why ResNet18's ImageNet weights cannot be had on this machine, or None when they load.

    The reproduce command asks before it trains a pretrained row, so an offline machine skips those rows with
    this sentence instead of failing or, worse, training something else under their name.
    """
    try:
        IMAGENET_WEIGHTS.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # offline: URLError; a partial download: a hash mismatch
        return (f"torchvision's ImageNet weights for ResNet18 could not be loaded ({type(exc).__name__}: {exc}); "
                f"they need network access once (then torch's cache in ~/.cache/torch/hub/checkpoints)")
    return None


@register_model("resnet18")
def resnet18(num_classes: int = 10, pretrained: bool = False, freeze_backbone: bool = False) -> nn.Module:
    """ResNet18 three ways: study B's frozen ImageNet backbone (``pretrained=True, freeze_backbone=True``), the
    same weights fine-tuned (``pretrained=True``), or trained from scratch (the default, which runs offline).

    A frozen *random* backbone (``pretrained=False, freeze_backbone=True``) is refused: only the head would learn,
    which measures nothing a ResNet18 experiment is about.

    At 32x32 the ImageNet stem leaves 8x8 after ``layer1``, then 4x4, 2x2 and 1x1, so explanations use ``layer1``
    (the last grid of at least 8x8, fmnist.interpret.layers).
    """
    if freeze_backbone and not pretrained:
        raise FmnistError("resnet18: freeze_backbone=true needs pretrained=true (a frozen random backbone leaves only "
                          "the 5,130-parameter head to learn); set both, or neither to train it from scratch.")
    try:
        backbone = tv_resnet18(weights=IMAGENET_WEIGHTS if pretrained else None)
    except Exception as exc:  # offline: URLError, or a partial download
        raise FmnistError(
            f"Could not load ImageNet weights for resnet18 ({type(exc).__name__}: {exc}); this needs network "
            f"access once (torch caches them in ~/.cache/torch/hub/checkpoints), or train it from scratch with "
            f"--model.model_kwargs '{{\"pretrained\": false, \"freeze_backbone\": false}}'."
        ) from None
    _no_inplace(backbone)
    features = nn.Sequential(OrderedDict(
        (name, getattr(backbone, name))
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
    ))
    if freeze_backbone:
        features.requires_grad_(False)
    classifier = nn.Sequential(OrderedDict(gap=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(),
                                           fc=nn.Linear(512, num_classes)))
    return FrozenAwareFeatureClassifier(features, classifier, frozen=freeze_backbone)


class FrozenAwareFeatureClassifier(FeatureClassifier):
    """Keeps a frozen backbone's BatchNorm in eval mode, so its statistics stay the pretrained ones."""

    def __init__(self, features: nn.Module, classifier: nn.Module, frozen: bool) -> None:
        super().__init__(features, classifier)
        self.frozen = frozen

    def train(self, mode: bool = True) -> FrozenAwareFeatureClassifier:
        super().train(mode)
        if self.frozen:
            self.features.eval()
        return self
