"""A tiny model trained on a task whose class signal sits in one known region, shared by the interpret tests.

(Not a conftest.py: ``from conftest import ...`` in other folders must keep finding tests/conftest.py.)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

from fmnist.models import create_model


def region_task(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 1 = a bright 6x6 square somewhere in the top-right quadrant; class 0 = none.

    Every image also has random noise in the bottom-left quadrant, which carries no class
    information. Top-right vs bottom-left means a transposed, flipped or mis-scaled map
    lands in the wrong quadrant.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, 14:, :14] = torch.rand(n, 1, 14, 14, generator=g) * 0.5
    y = torch.randint(0, 2, (n,), generator=g)
    corners = torch.randint(1, 8, (n, 2), generator=g)
    for i in torch.nonzero(y).flatten().tolist():
        r, c = corners[i].tolist()
        x[i, 0, r:r + 6, 14 + c:14 + c + 6] = 1.0
    return x, y


SIGNAL = torch.zeros(28, 28, dtype=torch.bool)
SIGNAL[:14, 14:] = True  # the top-right quadrant


@dataclass
class RegionModel:
    model: nn.Module
    x_test: torch.Tensor
    y_test: torch.Tensor
    accuracy: float


@functools.cache
def trained_region_model() -> RegionModel:
    """``scratch`` (2 classes) after one pass over 512 region-task images (~1 s on a CPU)."""
    torch.manual_seed(0)
    x, y = region_task(512, seed=0)
    model = create_model("scratch", num_classes=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for start in range(0, len(x), 32):
        loss = nn.functional.cross_entropy(model(x[start:start + 32]), y[start:start + 32])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    x_test, y_test = region_task(100, seed=1)
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(dim=1) == y_test).float().mean().item()
    return RegionModel(model, x_test, y_test, accuracy)
