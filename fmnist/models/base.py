"""The shape every CNN here shares: ``features`` (convolutions) then ``classifier`` (head).

Transfer learning swaps the head and freezes ``features``; Grad-CAM looks inside ``features``.
"""

from __future__ import annotations

import torch
from torch import nn


class FeatureClassifier(nn.Module):
    def __init__(self, features: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.features, self.classifier = features, classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
