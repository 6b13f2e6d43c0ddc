"""Study A's two Keras models: the small ResNet and the 3-conv CNN (SPEC.md, "Study A models")."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from fmnist.models.base import FeatureClassifier
from fmnist.models.registry import register_model


class ResidualBlock(nn.Module):
    """Conv-BN-ReLU-Conv-BN, add the input, ReLU (identity shortcut, same width)."""

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + x)


class StudyAResNet(FeatureClassifier):
    def __init__(self, num_classes: int = 10, width: int = 32) -> None:
        super().__init__(
            features=nn.Sequential(OrderedDict(
                conv1=nn.Conv2d(1, width, 3, padding=1), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),  # 14x14
                block1=ResidualBlock(width), pool2=nn.MaxPool2d(2),  # 7x7
                block2=ResidualBlock(width),
            )),
            classifier=nn.Sequential(OrderedDict(
                gap=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=nn.Linear(width, num_classes),
            )),
        )


@register_model("resnet")
def resnet(num_classes: int = 10) -> nn.Module:
    return StudyAResNet(num_classes)


@register_model("cnn")
def cnn(num_classes: int = 10) -> nn.Module:
    return FeatureClassifier(
        features=nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(1, 32, 3), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),  # 26 -> 13
            conv2=nn.Conv2d(32, 64, 3), relu2=nn.ReLU(), pool2=nn.MaxPool2d(2),  # 11 -> 5
            conv3=nn.Conv2d(64, 128, 3), relu3=nn.ReLU(),  # 3x3
        )),
        classifier=nn.Sequential(OrderedDict(
            flatten=nn.Flatten(), fc1=nn.Linear(128 * 3 * 3, 128), relu=nn.ReLU(), fc2=nn.Linear(128, num_classes),
        )),
    )
