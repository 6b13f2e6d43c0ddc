"""Today's recipe of every reproduce piece, and whether a ledger record is of it (current) or not (stale).

The pieces (:mod:`fmnist.reproduce.run`) train and score with exactly these configs and record their recipe;
the pages (:mod:`fmnist.reproduce.collect`) and the pieces' own skip check ask :class:`Freshness` whether a record
is current. A training, CV or baseline record is current when its essential settings (those that differ from
today's defaults, :func:`fmnist.training.recipe.essential`) are today's. A downstream piece (the MNIST test,
Grad-CAM, explanation checks, robustness, photos) names the run it scored by fingerprint beside its own settings:
its record is current when its own settings are today's and the run it names is the current record of each seed
it scored.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fmnist.baselines import BASELINES
from fmnist.ledger import find_record, fingerprint, sha256_file
from fmnist.reproduce.experiments import BY_NAME, ROBUSTNESS_OOD, Context, Experiment, photos_dir
from fmnist.training.api import CONFIG_DIR, PRETRAIN_CONFIG, load_config, resolve_config
from fmnist.training.recipe import essential, plain, training_recipe

EXPLAIN_CHECK_IMAGES = 500  # explain-check on the first test images of each model (docs/gradcam.md)
EXPLAIN_CHECK_SANITY = 50  # of them, re-explained at each randomisation step
GALLERY_IMAGES = 2000  # the gallery picks the most confident right and wrong image per class among these
PHOTO_PREPROCESS = "fashion"
CV_FOLDS = 3


def _common_overrides(ctx: Context) -> dict[str, Any]:
    """Settings every training piece of this budget shares (typed, for fmnist.training.fit)."""
    overrides: dict[str, Any] = {"trainer.enable_progress_bar": sys.stdout.isatty()}
    if ctx.budget.train_subset:
        overrides["data.train_subset"] = ctx.budget.train_subset
    if ctx.data_dir:
        overrides["data.data_dir"] = ctx.data_dir
    return overrides


def _config_path(exp: Experiment) -> Path | None:
    """The recipe a piece trains with: its own config (a study's, kept as an ablation) or, by default, the model's."""
    return CONFIG_DIR / f"{exp.config}.yaml" if exp.config else None


def train_config(ctx: Context, exp: Experiment, seed: int, resume: bool = False) -> dict[str, Any]:
    """The resolved ``fit`` config of one seed of a training piece."""
    return resolve_config(exp.model, config=_config_path(exp), overrides={**_common_overrides(ctx), **exp.overrides},
                          optimizer=exp.optimizer, seed=seed, epochs=ctx.budget.epochs, gpus=ctx.gpus,
                          logdir=ctx.root, name=ctx.run_name(exp.name, seed), version="version_0", resume=resume)


def cv_config(ctx: Context, exp: Experiment) -> dict[str, Any]:
    return resolve_config(exp.model, config=_config_path(exp), overrides={**_common_overrides(ctx), **exp.overrides,
                                                                          "early_stopping.patience": ctx.budget.cv_patience},
                          optimizer=exp.optimizer, seed=ctx.budget.seeds[0], epochs=ctx.budget.cv_epochs,
                          gpus=ctx.gpus, logdir=ctx.root, name=exp.name)


def _pretrain_recipe_config(exp: Experiment) -> dict[str, Any] | None:
    """``transfer`` trains on an MNIST base made by configs/mnist_pretrain.yaml: part of its recipe."""
    return load_config(CONFIG_DIR / f"{PRETRAIN_CONFIG}.yaml") if exp.model == "transfer" else None


def piece_recipe(ctx: Context, exp: Experiment, model: str | None = None) -> dict[str, Any]:
    """Today's recipe of a piece (for a downstream piece, of its part on ``model``), seed-independent.

    A record whose recipe differs from this is stale: the page says so and a rerun makes it again.
    """
    if exp.kind == "train":
        recipe = training_recipe(train_config(ctx, exp, 0), pretrain=_pretrain_recipe_config(exp))
        return {"budget.train_subset": ctx.budget.train_subset, **recipe}
    if exp.kind == "cv":
        return {"cv.folds": CV_FOLDS, **training_recipe(cv_config(ctx, exp))}
    if exp.kind == "baseline":
        spec = BASELINES[exp.model]
        return {"baseline": spec.name, "params": plain(spec.defaults), "one_vs_rest": spec.one_vs_rest,
                "train_subset": ctx.budget.baseline_subset}
    assert model is not None, exp.name
    run = run_reference(piece_recipe(ctx, BY_NAME[model]))
    if exp.kind == "cross":
        return {"run": run, "dataset": "mnist"}
    if exp.kind == "gradcam":
        return {"run": run, "images": GALLERY_IMAGES, "method": "default"}
    if exp.kind == "explain":
        return {"run": run, "images": EXPLAIN_CHECK_IMAGES, "sanity": EXPLAIN_CHECK_SANITY}
    if exp.kind == "robustness":
        return {"run": run, "corrupted": "fashion-c", "ood": list(ROBUSTNESS_OOD), "calibrate": True}
    if exp.kind == "photos":
        return {"run": run, "preprocess": PHOTO_PREPROCESS, "photos": photo_set_digest(ctx)}
    raise ValueError(exp.kind)


def photo_set_digest(ctx: Context) -> str | None:
    """The labelled photos' identity: the sha256 of their labels.csv (names and labels)."""
    folder = photos_dir(ctx.data_dir)
    return sha256_file(folder / "labels.csv")[:16] if folder and (folder / "labels.csv").is_file() else None




def run_reference(recipe: Mapping[str, Any]) -> str:
    """How a downstream record names the run it scored: the fingerprint of the run's essential settings."""
    return fingerprint(essential(recipe))


OWN_DATA = ("seeds", "photos")  # what a downstream record scored (its seeds, the photo set), not a setting to match


class Freshness:
    """Whether ledger records are of today's recipes (see the module docstring); today's recipes computed once."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._today: dict[tuple[str, str | None], dict[str, Any]] = {}

    def today(self, exp: Experiment, model: str | None = None) -> dict[str, Any]:
        key = (exp.name, model)
        if key not in self._today:
            self._today[key] = piece_recipe(self.ctx, exp, model)
        return self._today[key]

    def is_current(self, record: Mapping[str, Any]) -> bool:
        exp = BY_NAME.get(record["experiment"])
        if exp is None:
            return False  # the experiment is gone from the table
        if record["item"] == "not-run":
            return True  # a reason, not a result
        if exp.kind in ("train", "cv", "baseline"):
            return essential(record["recipe"]) == essential(self.today(exp))
        model = record.get("model")
        if model not in BY_NAME:
            return False
        stored = dict(record["recipe"])
        today = {**self.today(exp, model), **{k: stored[k] for k in OWN_DATA if k in stored}}
        scored = stored.pop("run", None)
        today.pop("run")
        if essential(stored) != essential(today):
            return False
        seeds = stored.get("seeds") or [record.get("seed")]
        return all(self._scored_current_run(model, seed, record["device"], scored) for seed in seeds)

    def _scored_current_run(self, model: str, seed: int | None, device: str, reference: Any) -> bool:
        """Whether ``reference`` names the current record of ``model``'s seed (by either fingerprint it may carry:
        records made before essential-settings references named the full recipe's)."""
        upstream = find_record(self.ctx.ledger, self.ctx.budget.name, model, f"s{seed}", device)
        return (upstream is not None and self.is_current(upstream)
                and reference in (upstream["recipe_fingerprint"], run_reference(upstream["recipe"])))
