"""Which test images to explain by default: one right and one wrong per class, the most confident of each."""

from __future__ import annotations

import torch


def default_selection(probs: torch.Tensor, labels: torch.Tensor) -> list[int]:
    """For each class: its most confident correct and most confident wrong prediction (when there is one)."""
    predicted = probs.argmax(dim=1)
    confidence = probs.max(dim=1).values
    chosen: list[int] = []
    for cls in range(probs.shape[1]):
        for correct in (True, False):
            pool = torch.nonzero((labels == cls) & ((predicted == labels) == correct)).flatten()
            if len(pool):
                chosen.append(int(pool[confidence[pool].argmax()]))
    return chosen
