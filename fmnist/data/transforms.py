"""The deterministic input transform every model sees, in training and at inference.

Images enter as float ``[N, 1, 28, 28]`` in ``[0, 1]`` and leave standardized (optional),
resized (optional, e.g. 32x32 for ResNet18) and with the channel count the model wants.
It is rebuilt from a checkpoint's saved data hyperparameters, so evaluation, Grad-CAM and
photo prediction feed a model exactly what it was trained on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class InputTransform(nn.Module):
    def __init__(self, mean: float = 0.0, std: float = 1.0, image_size: int = 28, channels: int = 1) -> None:
        super().__init__()
        if std <= 0:
            raise ValueError(f"std must be positive, got {std}.")
        self.mean, self.std, self.image_size, self.channels = float(mean), float(std), int(image_size), int(channels)

    def extra_repr(self) -> str:
        return f"mean={self.mean:.4f}, std={self.std:.4f}, image_size={self.image_size}, channels={self.channels}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean != 0.0 or self.std != 1.0:
            x = (x - self.mean) / self.std
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        if self.channels != x.shape[1]:
            x = x.expand(-1, self.channels, -1, -1) if x.shape[1] == 1 else x[:, : self.channels]
        return x.contiguous()


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, H, W]`` (or ``[N, 1, H, W]``) -> float ``[N, 1, H, W]`` in ``[0, 1]``."""
    x = images.div(255.0) if images.dtype == torch.uint8 else images.float()  # one op: uint8 / float -> float32
    return x.unsqueeze(1) if x.dim() == 3 else x
