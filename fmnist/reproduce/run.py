"""``python -m fmnist.reproduce``: re-run both studies' experiments, then write RESULTS.md and an HTML page.

Every piece runs through the same Python API a user would call (:func:`fmnist.training.fit`, the
K-fold driver, the evaluator, the baselines, Grad-CAM), in order and resumably: a training run
with a ``metrics.json`` is skipped, one killed mid-way resumes from its ``last.ckpt``, and every
other step keeps its result file. ``--budget quick`` (a 10,000-image subset, a few epochs, one
seed) finishes on a 2-core CPU in under 30 minutes and is labelled as such everywhere; ``--budget
full`` is the studies' recipe (each model's config, 3 seeds, CV up to 30 epochs).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from fmnist.data.sources import load_dataset
from fmnist.errors import FmnistError
from fmnist.evaluation.ensemble import evaluate_ensemble
from fmnist.evaluation.predict import predict_baseline, predict_checkpoint
from fmnist.evaluation.report import write_report
from fmnist.interpret.check import run_checks
from fmnist.interpret.figures import explained_items, save_grid
from fmnist.interpret.gradcam import explain
from fmnist.interpret.methods import METHODS
from fmnist.interpret.selection import default_selection
from fmnist.reproduce.experiments import (
    BUDGETS,
    BY_NAME,
    DEFAULT_ROOT,
    EXPERIMENTS,
    GROUP_ALIASES,
    NOT_RUN_FILE,
    ROBUSTNESS_OOD,
    Budget,
    Context,
    Experiment,
    get_budget,
    load_not_run,
    robustness_dir,
)
from fmnist.reproduce.page import write_results
from fmnist.runs import git_commit, machine_description, read_json
from fmnist.training.api import CONFIG_DIR, fit, resolve_config
from fmnist.training.checkpoints import load_trained
from fmnist.training.cv import run_cv


# -- the pieces ---------------------------------------------------------------------------------------
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


def _train(ctx: Context, exp: Experiment, seed: int) -> None:
    run_dir = ctx.run_dir(exp.name, seed)
    if (run_dir / "metrics.json").is_file():
        ctx.log(f"  {exp.name} seed {seed}: done already ({run_dir / 'metrics.json'})")
        return
    resume = (run_dir / "checkpoints" / "last.ckpt").is_file()
    if resume:
        ctx.log(f"  {exp.name} seed {seed}: resuming from {run_dir / 'checkpoints' / 'last.ckpt'}")
    elif run_dir.exists():
        shutil.rmtree(run_dir)  # started but no checkpoint yet: start clean
    ctx.log(f"  {exp.name} seed {seed}: training {exp.model}" + (f" ({exp.describe()})" if exp.describe() else ""))
    try:
        fit(exp.model, config=_config_path(exp), overrides={**_common_overrides(ctx), **exp.overrides},
            optimizer=exp.optimizer, seed=seed,
            epochs=ctx.budget.epochs, gpus=ctx.gpus, logdir=ctx.root, name=ctx.run_name(exp.name, seed),
            version="version_0", resume=resume)
    except FmnistError as exc:
        raise FmnistError(f"training {exp.name} (seed {seed}) failed: {exc}") from None
    if is_rank_zero() and not (run_dir / "metrics.json").is_file():
        raise FmnistError(f"training {exp.name} (seed {seed}) did not finish; see the output above, fix it and "
                          f"rerun the same command: finished pieces are skipped.")


def _up_to_date(product: Path, run_dir: Path) -> bool:
    """Whether a report or figure made from a run is newer than the run itself.

    A run trained again (its folder moved away, a config changed) must not keep the old run's report.
    """
    run_metrics = run_dir / "metrics.json"
    return product.is_file() and (not run_metrics.is_file()
                                  or product.stat().st_mtime >= run_metrics.stat().st_mtime)


def _evaluate_run(ctx: Context, exp: Experiment, seed: int) -> None:
    """Full evaluator report (confusion matrix, per-class F1, errors) of a finished run, for the page."""
    out = ctx.root / "evaluation" / ctx.run_name(exp.name, seed)
    if _up_to_date(out / "metrics.json", ctx.run_dir(exp.name, seed)):
        return
    pred = predict_checkpoint(ctx.run_dir(exp.name, seed), data_dir=ctx.data_dir)
    write_report(pred, out, name=ctx.run_name(exp.name, seed), save_predictions=False)


def _cv(ctx: Context, exp: Experiment) -> None:
    cv_file = ctx.root / f"{exp.name}-cv" / "cv_results.json"
    if cv_file.is_file() and json.loads(cv_file.read_text())["aggregate"]["folds_done"] == 3:
        ctx.log(f"  {exp.name}: done already ({cv_file})")
        return
    ctx.log(f"  {exp.name}: 3-fold CV of {exp.model}, up to {ctx.budget.cv_epochs} epochs")
    cfg = resolve_config(exp.model, config=_config_path(exp), overrides={**_common_overrides(ctx), **exp.overrides,
                                               "early_stopping.patience": ctx.budget.cv_patience},
                         optimizer=exp.optimizer, seed=ctx.budget.seeds[0], epochs=ctx.budget.cv_epochs,
                         gpus=ctx.gpus, logdir=ctx.root, name=exp.name)
    run_cv(cfg, 3)
    if is_rank_zero() and not cv_file.is_file():
        raise FmnistError(f"{exp.name} did not finish; rerun the same command to resume its folds.")


def _baseline(ctx: Context, exp: Experiment) -> None:
    out = ctx.root / "evaluation" / exp.name
    if (out / "metrics.json").is_file():
        ctx.log(f"  {exp.name}: done already ({out / 'metrics.json'})")
        return
    pred = predict_baseline(exp.model, data_dir=ctx.data_dir, train_subset=ctx.budget.baseline_subset,
                            artifacts_dir=ctx.root / "artifacts", log=ctx.log)
    write_report(pred, out, name=exp.name, save_predictions=False)


def _cross(ctx: Context, exp: Experiment) -> None:
    for model in exp.needs:
        seed = ctx.budget.seeds[0]
        out = ctx.root / "evaluation" / f"{model}-s{seed}_mnist"
        run = ctx.run_dir(model, seed)
        if _up_to_date(out / "metrics.json", run):
            continue
        if not (run / "metrics.json").is_file():
            ctx.log(f"  mnist-cross: no finished `{model}` run at {run}; run `--only {model}` first. Skipped.")
            continue
        pred = predict_checkpoint(run, dataset="mnist", data_dir=ctx.data_dir)
        write_report(pred, out, name=f"{model} on MNIST", save_predictions=False)


EXPLAIN_CHECK_IMAGES = 500  # explain-check on the first test images of each gallery's model (docs/gradcam.md)
EXPLAIN_CHECK_SANITY = 50  # of them, re-explained at each randomisation step


def _gradcam(ctx: Context, exp: Experiment) -> None:
    out = ctx.root / "gradcam"
    data = None
    for model in exp.needs:
        path = out / f"{model}.png"
        run = ctx.run_dir(model, ctx.budget.seeds[0])
        if _up_to_date(path, run):
            continue
        if not (run / "metrics.json").is_file():
            ctx.log(f"  gradcam: no finished `{model}` run at {run}; run `--only {model}` first. Skipped.")
            continue
        data = data or load_dataset("fashion", ctx.data_dir)
        trained = load_trained(run)
        images, labels = data.test_images[:2000], data.test_labels[:2000]
        probs = trained.predict_proba(images)
        chosen = default_selection(probs, labels)[:12]
        picked = images[torch.tensor(chosen)].unsqueeze(1)
        result = explain(trained, picked.float() / 255.0)
        items = explained_items(result, picked, trained.class_names, labels=[int(labels[i]) for i in chosen])
        save_grid(items, path, per_row=3, title=f"{METHODS[result.method].title}: {model} ({ctx.budget.name} budget), "
                                                 f"most confident right and wrong test image per class")
        # Whether the maps can be trusted (blank, deletion, randomisation), for the results page.
        run_checks(trained, images[:EXPLAIN_CHECK_IMAGES], labels[:EXPLAIN_CHECK_IMAGES],
                   out / f"{model}-explain-check", sanity_n=EXPLAIN_CHECK_SANITY)


def _robustness(ctx: Context, exp: Experiment) -> None:
    """Each model's finished seeds as one ensemble: members and ensemble on corruptions, OOD sets, calibration."""
    for model in exp.needs:
        seeds = [seed for seed in ctx.budget.seeds if (ctx.run_dir(model, seed) / "metrics.json").is_file()]
        if len(seeds) < 2:
            ctx.log(f"  robustness: {model} has {len(seeds)} finished seed(s) of {len(ctx.budget.seeds)}; an "
                    f"ensemble needs two (`--only {model}` with the budget's seeds, or `--seeds 42 43`). Skipped.")
            continue
        runs = [ctx.run_dir(model, seed) for seed in seeds]
        members = [ctx.run_name(model, seed) for seed in seeds]
        out = robustness_dir(ctx.root, model)
        done = read_json(out / "ensemble.json")
        if done and done.get("seeds") == members and all(_up_to_date(out / "ensemble.json", r) for r in runs):
            continue
        ctx.log(f"  robustness: {model} x{len(runs)} on fashion-c, OOD {', '.join(ROBUSTNESS_OOD)}, calibrated")
        evaluate_ensemble(runs, out=out, corrupted="fashion-c", ood=ROBUSTNESS_OOD, calibrate=True,
                          name=f"{model}x{len(runs)}", data_dir=ctx.data_dir, plots=True, extra={"seeds": members},
                          device="cuda" if ctx.gpus else "cpu")  # scored where the runs were trained


# -- driver -------------------------------------------------------------------------------------------
def select(only: list[str] | None) -> list[Experiment]:
    if not only:
        return list(EXPERIMENTS)
    names: list[str] = []
    for item in only:
        if item in GROUP_ALIASES:
            names += GROUP_ALIASES[item]
        elif item in BY_NAME:
            names.append(item)
        else:
            raise FmnistError(f"--only {item!r} is not an experiment; choose from: "
                              f"{', '.join([*BY_NAME, *GROUP_ALIASES])}.")
    return [e for e in EXPERIMENTS if e.name in names]


def is_rank_zero() -> bool:
    """Under ``--gpus N>1`` Lightning re-runs this command once per GPU; only the first process evaluates and writes."""
    return all(int(os.environ.get(var, "0")) == 0 for var in ("LOCAL_RANK", "NODE_RANK", "RANK"))


def _record_not_run(ctx: Context, exp: Experiment, reason: str | None) -> None:
    not_run = load_not_run(ctx.root)
    if reason is None:
        not_run.pop(exp.name, None)
    else:
        not_run[exp.name] = reason
    ctx.results_dir.mkdir(parents=True, exist_ok=True)
    (ctx.results_dir / NOT_RUN_FILE).write_text(json.dumps(not_run, indent=2) + "\n")


def run_experiment(ctx: Context, exp: Experiment) -> bool:
    """Run (or resume) one piece; False when this machine cannot run it (the reason is recorded for the page)."""
    if exp.unavailable is not None:
        reason = exp.unavailable()
        if is_rank_zero():
            _record_not_run(ctx, exp, reason)
        if reason:
            ctx.log(f"  {exp.name}: not run on this machine: {reason}.")
            return False
    if exp.kind == "train":
        for seed in ctx.budget.seeds:
            _train(ctx, exp, seed)
            if is_rank_zero():
                _evaluate_run(ctx, exp, seed)
    elif exp.kind == "cv":
        _cv(ctx, exp)
    elif not is_rank_zero():  # every process takes part in DDP training; the rest is rank 0's
        return True
    elif exp.kind == "baseline":
        _baseline(ctx, exp)
    elif exp.kind == "cross":
        _cross(ctx, exp)
    elif exp.kind == "gradcam":
        _gradcam(ctx, exp)
    elif exp.kind == "robustness":
        _robustness(ctx, exp)
    else:  # pragma: no cover - the table above is the only source of kinds
        raise ValueError(exp.kind)
    return True


def load_timings(root: Path) -> dict[str, Any]:
    """Seconds, command, commit and machine of every finished piece under ``root``."""
    path = root / "results" / "timings.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _save_timings(ctx: Context) -> None:
    ctx.results_dir.mkdir(parents=True, exist_ok=True)
    (ctx.results_dir / "timings.json").write_text(json.dumps(ctx.timings, indent=2) + "\n")


def _timing_from_runs(ctx: Context, exp: Experiment) -> dict[str, Any] | None:
    """A finished training piece with no timing entry (lost, or made before timings existed): its runs' own record."""
    if exp.kind != "train":
        return None
    seeds = [seed for seed in ctx.budget.seeds if (ctx.run_dir(exp.name, seed) / "metrics.json").is_file()]
    runs = [json.loads((ctx.run_dir(exp.name, seed) / "metrics.json").read_text()) for seed in seeds]
    if not runs:
        return None
    command = f"python -m fmnist.reproduce --budget {ctx.budget.name} --only {exp.name}"
    if ctx.budget.name in BUDGETS and tuple(seeds) != BUDGETS[ctx.budget.name].seeds:
        command += " --seeds " + " ".join(map(str, seeds))
    return {"seconds": round(sum(r.get("wall_seconds") or 0.0 for r in runs), 1), "machine": machine_description(),
            "finished_at": max(r.get("finished_at") or "" for r in runs),
            "command": command, "commit": runs[0].get("git_commit"), "from": "the runs' metrics.json (wall seconds of training + test)"}


def reproduce(budget: str | Budget, *, only: list[str] | None = None, gpus: int = 0, root: str | Path | None = None,
              data_dir: str | None = None, report: bool = True, repo: Path | None = None,
              seeds: list[int] | None = None, log: Callable[[str], None] = print) -> Path | None:
    """Run (or resume) the selected experiments under ``budget``; write the results page. Returns RESULTS path.

    ``repo`` is where RESULTS*.md, the HTML page and the committed figures go (default: the working directory).
    """
    base = budget if isinstance(budget, Budget) else get_budget(budget)
    spec = Budget(**{**base.__dict__, "seeds": tuple(seeds)}) if seeds else base
    ctx = Context(spec, Path(root) if root else DEFAULT_ROOT / spec.name, gpus, data_dir, log)
    ctx.root.mkdir(parents=True, exist_ok=True)
    ctx.timings = load_timings(ctx.root)
    command = "python -m fmnist.reproduce " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("reproduce.py") else None
    for exp in select(only):
        log(f"[{spec.name}] {exp.name}: {exp.title}")
        started = time.perf_counter()
        ran = run_experiment(ctx, exp)
        seconds = time.perf_counter() - started
        if not ran or not is_rank_zero():
            continue
        # Re-read before writing: another invocation (say --only vggbn beside --only deep) may have saved since.
        ctx.timings = load_timings(ctx.root)
        entry = ctx.timings.get(exp.name)
        backfilled = _timing_from_runs(ctx, exp) if entry is None and seconds <= 1.0 else None
        if backfilled:  # finished earlier, its timing lost or never written: the runs' own record
            entry = backfilled
        elif entry is None or seconds > 1.0:  # a skipped piece keeps the time it took when it ran
            entry = entry or {"seconds": 0.0}
            entry.update(seconds=round(entry.get("seconds", 0.0) + seconds, 1), machine=machine_description(),
                         finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"), command=command, commit=git_commit())
        ctx.timings[exp.name] = entry
        _save_timings(ctx)
    if not report or not is_rank_zero():
        return None
    # The page shows every finished seed of the budget, not only those this invocation was asked to run.
    return write_results(ctx.root, base, ctx.timings, repo=repo)

