"""``python evaluate.py explain-check RUN``: can these explanations be trusted? Numbers, figures and a report.

For the first ``--n`` images of a split and each ``--method`` it measures

* the **blank-map rate** and the garment's share of the positive mass vs. its area
  (:mod:`fmnist.interpret.measures`);
* **deletion / insertion** areas under the accuracy curve against a random and a
  garment-first order (:mod:`fmnist.interpret.faithfulness`);
* **model randomisation**: Spearman correlation with the trained maps after each cascading
  re-initialisation, on the first ``--sanity-n`` images (:mod:`fmnist.interpret.sanity`);
* **per-class mean maps**, right and wrong, and the per-image panels of one right and one
  wrong image per class;

and writes ``explain_check.json``, ``explain_check.md``, a self-contained ``explain_check.html``
and the figures into ``RUN/explain-check/`` (or ``--out``). :func:`run_checks` is the Python API.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from fmnist.figures.explanations import (
    explained_items,
    save_class_means,
    save_curves,
    save_grid,
    save_randomisation,
    save_randomisation_examples,
)
from fmnist.files import write_json_atomic
from fmnist.interpret.faithfulness import DELETION_STEPS, faithfulness, reference_curves
from fmnist.interpret.gradcam import attribute
from fmnist.interpret.layers import resolve_layer
from fmnist.interpret.measures import GARMENT_THRESHOLD, class_means, garment_mask, summarize_maps
from fmnist.interpret.methods import DEFAULT_METHOD, METHODS, get_method
from fmnist.interpret.report import write_reports
from fmnist.interpret.sanity import PASS_THRESHOLD, cascading_randomisation
from fmnist.interpret.selection import default_selection
from fmnist.training.checkpoints import TrainedModel

DEFAULT_N = 1000
DEFAULT_SANITY_N = 200
OUT_FOLDER = "explain-check"


def _device(trained: TrainedModel) -> torch.device:
    return next(trained.module.parameters()).device


def _check_method(trained: TrainedModel, method: str, images: torch.Tensor, labels: torch.Tensor,
                  references: dict[str, dict], sanity_n: int, layer: str | None, steps: int, seed: int,
                  out: Path) -> dict[str, Any]:
    spec = get_method(method)
    model, network = trained.module.model, trained.network
    started = time.perf_counter()
    result = attribute(model, images, method=method, transform=trained.transform, model_name=trained.model_name,
                       layer=layer)
    seconds = time.perf_counter() - started
    maps, predictions = result.maps, result.predictions
    entry: dict[str, Any] = {"title": spec.title, "summary": spec.summary, "layer": result.layer,
                             "aligned": result.aligned, "seconds": seconds, "maps": summarize_maps(maps, images)}
    wrong = predictions != labels
    entry["maps"]["blank_rate_right"] = float(result.blank[~wrong].float().mean()) if (~wrong).any() else None
    entry["maps"]["blank_rate_wrong"] = float(result.blank[wrong].float().mean()) if wrong.any() else None
    entry["faithfulness"] = faithfulness(network, images, maps, labels, result.targets, references, steps, seed)

    sanity_images, sanity_targets = images[:sanity_n], result.targets[:sanity_n]

    def maps_of(candidate: torch.nn.Module) -> torch.Tensor:
        return attribute(candidate, sanity_images, method=method, transform=trained.transform,
                         model_name=trained.model_name, layer=result.layer, target=sanity_targets).maps

    randomisation = cascading_randomisation(model, maps_of, maps[:sanity_n], seed=seed,
                                            region=garment_mask(sanity_images))
    entry["randomisation"] = randomisation.to_dict()

    names = trained.class_names
    means = class_means(maps, images, labels, predictions, len(names))
    entry["class_means"] = {"counts": means["counts"].tolist(), "blank": means["blank"].tolist()}
    where = f"at {result.layer}" if result.layer else "(model-agnostic)"
    figures = {
        "class_means": save_class_means(means, names, out / f"class_means_{method}.png",
                                        title=f"{trained.model_name}: mean {spec.title} map per class {where}, "
                                              f"right (top) and wrong (bottom), first {len(images):,} images"),
        "randomisation_examples": save_randomisation_examples(
            randomisation.examples, sanity_images, [str(s["layer"]) for s in randomisation.steps],
            out / f"randomisation_examples_{method}.png",
            title=f"{trained.model_name}, {spec.title}: maps as layers are re-initialised (output first)"),
    }
    chosen = default_selection(result.probs, labels)
    picked = images[chosen]
    items = explained_items(result.select(chosen), picked, names, [int(labels[i]) for i in chosen], [f"#{i}" for i in chosen])
    figures["panels"] = save_grid(items, out / f"panels_{method}.png", per_row=4,
                                  title=f"{trained.model_name}: {spec.title} {where}, most confident right and "
                                        f"wrong image per class")
    entry["figures"] = {key: path.name for key, path in figures.items()}
    return entry


def run_checks(trained: TrainedModel, images: torch.Tensor, labels: torch.Tensor, out: Path,
               methods: Sequence[str] = (DEFAULT_METHOD,), sanity_n: int = DEFAULT_SANITY_N, layer: str | None = None,
               steps: int = DELETION_STEPS, seed: int = 0, split: str = "test") -> dict[str, Any]:
    """All checks for ``methods`` on ``images`` (uint8 or unit floats ``[N, (1,) 28, 28]``); writes ``out``.

    Returns the summary that ``explain_check.json`` holds.
    """
    for method in methods:
        get_method(method)
    if layer is not None:
        resolve_layer(trained.module.model, trained.model_name, layer)
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    x = x.reshape(len(x), 1, *x.shape[-2:])
    labels = labels.long()
    out.mkdir(parents=True, exist_ok=True)
    network = trained.network  # the backbone the maps explain (no test-time flip averaging)
    with torch.no_grad():
        predictions = torch.cat([network(x[i:i + 1000].to(_device(trained))).argmax(dim=1).cpu()
                                 for i in range(0, len(x), 1000)])
    references = reference_curves(network, x, labels, predictions, steps, seed)
    summary: dict[str, Any] = {
        "model": trained.model_name, "checkpoint": str(trained.checkpoint),
        "run_dir": str(trained.run_dir) if trained.run_dir else None, "dataset": trained.dataset, "split": split,
        "n": len(x), "sanity_n": min(sanity_n, len(x)), "accuracy": float((predictions == labels).float().mean()),
        "default_layer": resolve_layer(trained.module.model, trained.model_name)[0], "layer_override": layer,
        "steps": steps, "seed": seed, "garment_threshold": GARMENT_THRESHOLD, "randomisation_threshold": PASS_THRESHOLD,
        "explained_class": "predicted", "methods": {},
    }
    for method in methods:
        summary["methods"][method] = _check_method(trained, method, x, labels, references, min(sanity_n, len(x)),
                                                   layer, steps, seed, out)
    faith = {m: e["faithfulness"] for m, e in summary["methods"].items()}
    save_curves(faith, out / "deletion_insertion.png",
                title=f"{trained.model_name}: deletion and insertion, first {len(x):,} {split} images")
    save_randomisation({m: e["randomisation"]["steps"] for m, e in summary["methods"].items()},
                       out / "randomisation.png", threshold=PASS_THRESHOLD,
                       title=f"{trained.model_name}: cascading randomisation, first {summary['sanity_n']} images")
    summary["figures"] = {"deletion_insertion": "deletion_insertion.png", "randomisation": "randomisation.png"}
    summary["versions"] = {"python": platform.python_version(), "torch": torch.__version__}
    summary["created"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    write_json_atomic(out / "explain_check.json", summary)
    write_reports(summary, out)
    return summary


def method_names(requested: Sequence[str]) -> list[str]:
    """``--method`` values: one or more method names, or ``all``; unknown names are one sentence."""
    names = list(METHODS) if "all" in requested else list(dict.fromkeys(requested))
    for name in names:
        get_method(name)
    return names
