"""What a batch of maps says, in numbers: how many are blank, and how much of their mass lies on the garment.

A Fashion-MNIST garment is the bright part of a black frame, so its mask is simply the pixels
above a small threshold (:data:`GARMENT_THRESHOLD`, in ``[0, 1]`` units). A map that put its
positive mass uniformly over the image would put ``area`` of it on the garment; the ratio
``share / area`` says how much more than that a method concentrates there (1 = no better).
"""

from __future__ import annotations

import math

import torch

GARMENT_THRESHOLD = 0.05  # ~13/255: Fashion-MNIST's background is 0, JPEG-like noise stays below this


def blank_maps(maps: torch.Tensor) -> torch.Tensor:
    """bool ``[N]``: maps with no positive value anywhere."""
    return maps.flatten(1).amax(dim=1) <= 0 if len(maps) else torch.zeros(0, dtype=torch.bool)


def garment_mask(images: torch.Tensor, threshold: float = GARMENT_THRESHOLD) -> torch.Tensor:
    """bool ``[N, H, W]``: the garment's pixels of unit-float (or uint8) images ``[N, (1,) H, W]``."""
    unit = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    return unit.reshape(len(unit), *unit.shape[-2:]) > threshold


def mass_in(maps: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Share of each map's positive mass inside a boolean ``region`` (``[H, W]`` or ``[N, H, W]``); NaN if blank."""
    total = maps.flatten(1).sum(dim=1)
    inside = (maps * region).flatten(1).sum(dim=1)
    return torch.where(total > 0, inside / total.clamp_min(1e-12), torch.full_like(total, float("nan")))


def _mean(values: torch.Tensor) -> float | None:
    values = values[~values.isnan()]
    return float(values.mean()) if len(values) else None


def summarize_maps(maps: torch.Tensor, images: torch.Tensor) -> dict[str, float | int | None]:
    """Blank count and rate, and the garment's share of positive mass vs. its area (over the non-blank maps)."""
    blank = blank_maps(maps)
    garment = garment_mask(images)
    share = mass_in(maps, garment)
    area = garment.flatten(1).float().mean(dim=1)
    kept = ~blank
    mean_share, mean_area = _mean(share[kept]), _mean(area[kept])
    lift = _mean(share[kept] / area[kept].clamp_min(1e-6))
    return {
        "n": len(maps),
        "blank": int(blank.sum()),
        "blank_rate": float(blank.float().mean()) if len(maps) else math.nan,
        "garment_mass_share": mean_share,
        "garment_area": mean_area,
        "garment_mass_over_area": lift,
    }


def class_means(maps: torch.Tensor, images: torch.Tensor, labels: torch.Tensor, predictions: torch.Tensor,
                num_classes: int) -> dict[str, torch.Tensor]:
    """Per true class and outcome (0 = right, 1 = wrong): mean peak-normalised map, mean image and counts.

    Blank maps do not enter the mean map (they would pull it towards zero without saying where);
    they are counted in ``blank``. ``maps``: ``[num_classes, 2, H, W]``, NaN where a group has no map.
    """
    unit = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    unit = unit.reshape(len(unit), *unit.shape[-2:])
    peak = maps.flatten(1).amax(dim=1)
    blank = peak <= 0
    normalised = maps / peak.clamp_min(1e-12)[:, None, None]
    size = maps.shape[-2:]
    mean_maps = torch.full((num_classes, 2, *size), float("nan"))
    mean_images = torch.zeros(num_classes, 2, *size)
    counts = torch.zeros(num_classes, 2, dtype=torch.long)
    blanks = torch.zeros(num_classes, 2, dtype=torch.long)
    wrong = predictions != labels
    for cls in range(num_classes):
        for outcome in (0, 1):
            group = (labels == cls) & (wrong == bool(outcome))
            counts[cls, outcome] = int(group.sum())
            blanks[cls, outcome] = int((group & blank).sum())
            if group.any():
                mean_images[cls, outcome] = unit[group].mean(dim=0)
            if (group & ~blank).any():
                mean_maps[cls, outcome] = normalised[group & ~blank].mean(dim=0)
    return {"maps": mean_maps, "images": mean_images, "counts": counts, "blank": blanks}
