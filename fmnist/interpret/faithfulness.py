"""Deletion and insertion curves (Petsiuk et al., 2018, "RISE"): does the map rank the pixels the model uses?

*Deletion* blacks out the pixels in the map's order, most salient first, and re-scores the
model after every 5% of the image; a faithful map makes the accuracy (and the explained class's
probability) fall much faster than a random order does. *Insertion* starts from the black
image and reveals pixels in the same order; there a faithful map makes the scores rise faster.
Black is the fill because it is Fashion-MNIST's background: a removed pixel looks like no ink,
not like a foreign patch.

Each area under the curve (fraction on the x axis, 0..1) is set against two references, scored
on the same images:

* ``random``: a random order of all pixels (the issue's yardstick: ratio ``map / random``).
* ``garment``: the garment's pixels first, in random order, then the background. On a black
  background, any map that merely knows where the garment is beats ``random``; beating
  ``garment`` shows that the map knows *which part* of the garment matters.

Ties (a blank map, the zeros of a ReLU'd map) are broken at random, so a blank map scores like
the random order instead of like a raster scan. The curves measure the model on images it
never saw (half-black garments); that caveat (Hooker et al., 2019) applies to all methods alike.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.integrate import trapezoid

from fmnist.interpret.measures import garment_mask

DELETION_STEPS = 20
MODES = ("deletion", "insertion")


def pixel_ranks(scores: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """int64 ``[N, P]``: each pixel's position in the order (0 = first), highest score first, ties in random order."""
    n, pixels = scores.shape
    shuffle = torch.argsort(torch.rand(n, pixels, generator=generator), dim=1)
    by_score = torch.argsort(-scores.gather(1, shuffle), dim=1, stable=True)
    order = shuffle.gather(1, by_score)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(pixels).expand(n, pixels).contiguous())
    return ranks


@torch.no_grad()
def perturbation_curve(network: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, ranks: torch.Tensor,
                       labels: torch.Tensor, targets: torch.Tensor, mode: str = "deletion",
                       steps: int = DELETION_STEPS, batch_size: int = 1000) -> dict[str, list[float] | float]:
    """Accuracy (vs ``labels``) and mean probability of ``targets`` after deleting/inserting each fraction.

    ``images``: unit floats ``[N, 1, H, W]``; ``ranks``: :func:`pixel_ranks` of the same pixels.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    n, pixels = ranks.shape
    device = next((p.device for p in getattr(network, "parameters", lambda: iter(()))()), torch.device("cpu"))
    accuracy, probability = [], []
    for k in range(steps + 1):
        count = round(k / steps * pixels)
        correct = chosen = 0.0
        for start in range(0, n, batch_size):
            x = images[start:start + batch_size]
            first = (ranks[start:start + batch_size] < count).view(len(x), 1, *x.shape[-2:])
            x = x.masked_fill(first, 0.0) if mode == "deletion" else x * first
            p = torch.softmax(network(x.to(device)), dim=1).cpu()
            correct += float((p.argmax(dim=1) == labels[start:start + batch_size]).sum())
            chosen += float(p.gather(1, targets[start:start + batch_size, None]).sum())
        accuracy.append(correct / n)
        probability.append(chosen / n)
    fractions = np.linspace(0.0, 1.0, steps + 1)
    return {"accuracy": accuracy, "probability": probability,
            "auc_accuracy": float(trapezoid(accuracy, fractions)),
            "auc_probability": float(trapezoid(probability, fractions))}


def reference_curves(network: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, labels: torch.Tensor,
                     targets: torch.Tensor, steps: int = DELETION_STEPS, seed: int = 0) -> dict[str, dict]:
    """The ``random`` and ``garment``-first orders' curves, per mode (shared by every method on these images)."""
    generator = torch.Generator().manual_seed(seed)
    n = len(images)
    garment = garment_mask(images).flatten(1).float()
    orders = {"random": torch.zeros(n, garment.shape[1]), "garment": garment}
    out: dict[str, dict] = {mode: {} for mode in MODES}
    for name, scores in orders.items():
        ranks = pixel_ranks(scores, generator)
        for mode in MODES:
            out[mode][name] = perturbation_curve(network, images, ranks, labels, targets, mode, steps)
    return out


def faithfulness(network: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, maps: torch.Tensor,
                 labels: torch.Tensor, targets: torch.Tensor, references: dict[str, dict] | None = None,
                 steps: int = DELETION_STEPS, seed: int = 0) -> dict[str, object]:
    """Deletion and insertion curves of ``maps`` with their ratios to the reference orders.

    ``ratio_random`` is the map's area under the accuracy curve over the random order's:
    below 1 is better for deletion (the issue's goal: <= 0.6), above 1 for insertion.
    """
    images = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    images = images.reshape(len(images), 1, *images.shape[-2:])
    if references is None:
        references = reference_curves(network, images, labels, targets, steps, seed)
    ranks = pixel_ranks(maps.flatten(1).float(), torch.Generator().manual_seed(seed + 1))
    out: dict[str, object] = {"steps": steps, "fractions": np.linspace(0.0, 1.0, steps + 1).tolist()}
    for mode in MODES:
        curve = perturbation_curve(network, images, ranks, labels, targets, mode, steps)
        entry = {"map": curve, **references[mode]}
        for name in ("random", "garment"):
            reference = references[mode][name]
            entry[f"ratio_{name}"] = curve["auc_accuracy"] / max(reference["auc_accuracy"], 1e-12)
            entry[f"ratio_{name}_probability"] = curve["auc_probability"] / max(reference["auc_probability"], 1e-12)
        out[mode] = entry
    return out
