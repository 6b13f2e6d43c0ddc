"""Model randomisation (Adebayo et al., 2018, "Sanity Checks for Saliency Maps"): maps must depend on the weights.

The layers are re-initialised one at a time from the output back to the input (cascading),
keeping the earlier re-initialisations, and after every step the maps of the same images, for
the same classes, are compared with the trained model's by Spearman rank correlation (per image,
over pixels, ties averaged). A method whose maps still look the same when the weights that
produced the prediction are noise explains the input, not the model: it fails the check.

Re-initialisation is each module's own ``reset_parameters()`` (PyTorch's default initialisers;
BatchNorm also forgets its running statistics), seeded per step, so the run is repeatable and
leaves the global random state alone. A map that turns blank has no ranks: it counts as changed
in ``blank_rate`` and is left out of the correlation's mean (``defined`` says how many remain).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import rankdata
from torch import nn

from fmnist.interpret.measures import blank_maps

PASS_THRESHOLD = 0.2  # issue 15: mean rank correlation after full randomisation must be <= 0.2
EXAMPLES = 4  # maps kept per step for the figure


def randomisation_steps(model: nn.Module) -> list[str]:
    """Modules holding their own weights, output first (the cascading order)."""
    names = [name for name, module in model.named_modules()
             if hasattr(module, "reset_parameters") and any(True for _ in module.parameters(recurse=False))]
    return names[::-1]


def _pearson(ra: np.ndarray, rb: np.ndarray) -> np.ndarray:
    ra = ra - ra.mean(axis=-1, keepdims=True)
    rb = rb - rb.mean(axis=-1, keepdims=True)
    denominator = np.sqrt((ra ** 2).sum(axis=-1) * (rb ** 2).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (ra * rb).sum(axis=-1) / denominator, np.nan)


def spearman_rows(a: torch.Tensor, b: torch.Tensor, region: torch.Tensor | None = None) -> np.ndarray:
    """Spearman's rank correlation of each pair of maps; NaN where either is constant.

    With ``region`` (bool, one mask per map) only the pixels inside it are ranked: the garment's.
    """
    a, b = a.flatten(1).double().numpy(), b.flatten(1).double().numpy()
    if region is None:
        return _pearson(rankdata(a, axis=1), rankdata(b, axis=1))
    masks = region.flatten(1).numpy()
    return np.array([_pearson(rankdata(x[m]), rankdata(y[m])) if m.sum() > 1 else np.nan
                     for x, y, m in zip(a, b, masks, strict=True)])


@dataclass
class Randomisation:
    """Per step: the layer just re-initialised and how the maps compare with the trained model's."""

    steps: list[dict[str, object]]
    examples: torch.Tensor  # [steps + 1, EXAMPLES, H, W]: trained maps first

    @property
    def final_correlation(self) -> float | None:
        value = self.steps[-1]["spearman_mean"]
        return None if value is None else float(value)

    @property
    def final_correlation_in_region(self) -> float | None:
        value = self.steps[-1].get("spearman_mean_in_region")
        return None if value is None else float(value)

    @property
    def passed(self) -> bool | None:
        final = self.final_correlation
        return None if final is None else final <= PASS_THRESHOLD

    def to_dict(self) -> dict[str, object]:
        return {"steps": self.steps, "final_spearman_mean": self.final_correlation,
                "final_spearman_mean_in_region": self.final_correlation_in_region, "threshold": PASS_THRESHOLD,
                "passed": self.passed}


def _mean(values: np.ndarray) -> float | None:
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else None


def _stats(trained: torch.Tensor, maps: torch.Tensor, step: int, layer: str,
           region: torch.Tensor | None) -> dict[str, object]:
    rho = spearman_rows(trained, maps)
    defined = rho[~np.isnan(rho)]
    stats: dict[str, object] = {
        "step": step, "layer": layer, "defined": int(len(defined)), "spearman_mean": _mean(rho),
        "spearman_median": float(np.median(defined)) if len(defined) else None,
        "blank_rate": float(blank_maps(maps).float().mean()) if len(maps) else math.nan}
    if region is not None:
        stats["spearman_mean_in_region"] = _mean(spearman_rows(trained, maps, region))
    return stats


def cascading_randomisation(model: nn.Module, maps_of: Callable[[nn.Module], torch.Tensor],
                            trained_maps: torch.Tensor | None = None, seed: int = 0,
                            region: torch.Tensor | None = None) -> Randomisation:
    """Re-initialise ``model``'s layers top-down on a copy; ``maps_of(model)`` gives ``[N, H, W]`` maps each step.

    ``region`` (bool ``[N, H, W]``, e.g. the garments) adds the correlation over those pixels only:
    pixels that are zero in every map whatever the weights (a black background under occlusion
    or integrated gradients) tie in both rankings and lift the whole-image correlation by
    themselves (~0.9 for a garment covering half the image); inside the garment they do not.
    """
    trained = maps_of(model) if trained_maps is None else trained_maps
    randomised = copy.deepcopy(model)
    steps = [_stats(trained, trained, 0, "none (trained)", region)]
    examples = [trained[:EXAMPLES].clone()]
    cuda = sorted({p.device.index or 0 for p in randomised.parameters() if p.is_cuda})
    for i, name in enumerate(randomisation_steps(randomised), start=1):
        with torch.random.fork_rng(devices=cuda), torch.no_grad():
            torch.manual_seed(seed + i)
            randomised.get_submodule(name).reset_parameters()
        maps = maps_of(randomised)
        steps.append(_stats(trained, maps, i, name, region))
        examples.append(maps[:EXAMPLES].clone())
    return Randomisation(steps, torch.stack(examples))
