"""``python -m fmnist.reproduce``: re-run both studies' experiments; each finished piece becomes a ledger record.

Every piece runs through the same Python API a user would call (:func:`fmnist.training.fit`, the K-fold
driver, the evaluator, the baselines, Grad-CAM, the photo predictor), in order and resumably, and writes its
record into the results ledger (:mod:`fmnist.ledger`, ``results/`` of the repository) the moment it finishes.
A piece whose record exists with today's recipe is skipped, on any machine: the ledger, not a run folder, is
what a budget resumes from. Run folders (checkpoints, TensorBoard events, reports) go under ``--root``; a run
killed mid-way resumes from its ``last.ckpt`` there. The pages are written from the ledger alone
(:mod:`fmnist.reproduce.page`).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from fmnist.data.sources import load_dataset
from fmnist.errors import FmnistError
from fmnist.evaluation.ensemble import evaluate_ensemble
from fmnist.evaluation.predict import predict_baseline, predict_checkpoint
from fmnist.evaluation.report import write_report
from fmnist.figures.explanations import explained_items, save_grid
from fmnist.files import write_bytes_atomic, write_json_atomic
from fmnist.interpret.check import run_checks
from fmnist.interpret.gradcam import explain
from fmnist.interpret.methods import METHODS
from fmnist.interpret.selection import default_selection
from fmnist.ledger import (
    find_record,
    fingerprint,
    sha256_file,
)
from fmnist.photos.predict import predict_photos
from fmnist.photos.stream import PhotoOptions
from fmnist.reproduce import records as R
from fmnist.reproduce.experiments import (
    BY_NAME,
    DEFAULT_ROOT,
    EXPERIMENTS,
    GROUP_ALIASES,
    PHOTO_MODELS,
    ROBUSTNESS_OOD,
    Budget,
    Context,
    Experiment,
    get_budget,
    photos_dir,
    robustness_dir,
)
from fmnist.reproduce.page import write_results
from fmnist.reproduce.piece_records import checkpoint_entry, has_finished, piece_done, record_piece
from fmnist.reproduce.recipes import (
    CV_FOLDS,
    EXPLAIN_CHECK_IMAGES,
    EXPLAIN_CHECK_SANITY,
    GALLERY_IMAGES,
    PHOTO_PREPROCESS,
    cv_config,
    piece_recipe,
    train_config,
)
from fmnist.runs import read_json
from fmnist.training.api import run_config
from fmnist.training.checkpoints import load_trained
from fmnist.training.cv import run_cv
from fmnist.training.recipe import essential

RECIPE_FILE = "recipe.json"  # in a run folder: the canonical recipe it was started with
NOT_RUN_ITEM = "not-run"


# -- the pieces -----------------------------------------------------------------------------------------
def ensure_run(ctx: Context, exp: Experiment, seed: int) -> Path:
    """A finished run folder of today's recipe for one seed: trained (or resumed) here when missing."""
    run_dir = ctx.run_dir(exp.name, seed)
    recipe = piece_recipe(ctx, exp)
    saved = read_json(run_dir / RECIPE_FILE)
    if run_dir.exists() and saved is not None and essential(saved) != essential(recipe):
        stale = run_dir.with_name(f"stale-{fingerprint(saved)}-{int(time.time())}")
        ctx.log(f"  {exp.name} seed {seed}: {run_dir} was made with another recipe; moved to {stale}")
        run_dir.rename(stale)
    if (run_dir / "metrics.json").is_file():
        status = (read_json(run_dir / "metrics.json") or {}).get("status")
        if status not in (None, "finished"):  # e.g. diverged: a failure to show, never a result to average
            raise FmnistError(f"training {exp.name} (seed {seed}) ended {status!r} (see {run_dir / 'metrics.json'}); "
                              f"fix its recipe, or move that folder away to train it again.")
        return run_dir
    resume = (run_dir / "checkpoints" / "last.ckpt").is_file()
    if resume:
        ctx.log(f"  {exp.name} seed {seed}: resuming from {run_dir / 'checkpoints' / 'last.ckpt'}")
    elif run_dir.exists():
        shutil.rmtree(run_dir)  # started but no checkpoint yet: start clean
    ctx.log(f"  {exp.name} seed {seed}: training {exp.model}" + (f" ({exp.describe()})" if exp.describe() else ""))
    if is_rank_zero():
        write_json_atomic(run_dir / RECIPE_FILE, recipe, sort_keys=True)
    try:
        run_config(train_config(ctx, exp, seed, resume=resume))
    except FmnistError as exc:
        raise FmnistError(f"training {exp.name} (seed {seed}) failed: {exc}") from None
    if is_rank_zero() and not (run_dir / "metrics.json").is_file():
        raise FmnistError(f"training {exp.name} (seed {seed}) did not finish; see the output above, fix it and "
                          f"rerun the same command: finished pieces are skipped.")
    return run_dir


def _train(ctx: Context, exp: Experiment, seed: int) -> None:
    recipe = piece_recipe(ctx, exp)
    item = f"s{seed}"
    if piece_done(ctx, exp, item):
        return
    run_dir = ensure_run(ctx, exp, seed)
    if not is_rank_zero():
        return
    out = ctx.root / "evaluation" / ctx.run_name(exp.name, seed)
    report = read_json(out / "metrics.json") if _up_to_date(out / "metrics.json", run_dir) else None
    if report is None:
        pred = predict_checkpoint(run_dir, data_dir=ctx.data_dir)
        report = write_report(pred, out, name=ctx.run_name(exp.name, seed), save_predictions=False)
    metrics = read_json(run_dir / "metrics.json") or {}
    record_piece(ctx, exp, item, recipe, R.run_metrics(metrics), metrics.get("wall_seconds"), seed=seed,
            commit=metrics.get("git_commit"), extra={**R.run_provenance(metrics),
                                                     "checkpoint": checkpoint_entry(ctx, metrics.get("best_checkpoint"))},
            model=exp.model, report=R.report_section(report), curves=R.read_curves(run_dir))


def _up_to_date(product: Path, run_dir: Path) -> bool:
    """Whether a report or figure made from a run is newer than the run itself.

    A run trained again (its folder moved away, a config changed) must not keep the old run's report.
    """
    run_metrics = run_dir / "metrics.json"
    return product.is_file() and (not run_metrics.is_file()
                                  or product.stat().st_mtime >= run_metrics.stat().st_mtime)


def _cv(ctx: Context, exp: Experiment) -> None:
    recipe = piece_recipe(ctx, exp)
    if piece_done(ctx, exp, "folds"):
        return
    cv_file = ctx.root / f"{exp.name}-cv" / "cv_results.json"
    started = time.perf_counter()
    ctx.log(f"  {exp.name}: {CV_FOLDS}-fold CV of {exp.model}, up to {ctx.budget.cv_epochs} epochs")
    run_cv(cv_config(ctx, exp), CV_FOLDS)
    summary = read_json(cv_file)
    if not is_rank_zero():
        return
    if not summary or summary["aggregate"]["folds_done"] != CV_FOLDS:
        raise FmnistError(f"{exp.name} did not finish; rerun the same command to resume its folds.")
    fold_metrics = read_json(ctx.root / f"{exp.name}-cv" / "fold_0" / "metrics.json") or {}
    seconds = sum(f.get("seconds") or 0.0 for f in summary["folds"]) or time.perf_counter() - started
    record_piece(ctx, exp, "folds", recipe, R.cv_metrics(summary), seconds, seed=ctx.budget.seeds[0], model=exp.model,
            commit=fold_metrics.get("git_commit"), extra=R.run_provenance(fold_metrics))


def _baseline(ctx: Context, exp: Experiment, models: Sequence[str] | None = None) -> None:
    """A scikit-learn baseline fitted and scored (``models`` is unused: it scores no trained CNN)."""
    recipe = piece_recipe(ctx, exp)
    if piece_done(ctx, exp, "fit"):
        return
    out = ctx.root / "evaluation" / exp.name
    started = time.perf_counter()
    pred = predict_baseline(exp.model, data_dir=ctx.data_dir, train_subset=ctx.budget.baseline_subset,
                            artifacts_dir=ctx.root / "artifacts", log=ctx.log)
    report = write_report(pred, out, name=exp.name, save_predictions=False)
    source = load_dataset("fashion", ctx.data_dir).provenance
    record_piece(ctx, exp, "fit", recipe, R.baseline_metrics(report), time.perf_counter() - started,
            extra={"data_files": R.data_files(source.as_dict() if source else None)},
            model=exp.model, report=R.report_section(report))


def _first_run(ctx: Context, exp: Experiment, model: str) -> tuple[Path, dict[str, Any]]:
    """The first seed's run of ``model`` (trained here if its folder is not on this machine), its recipe."""
    seed = ctx.budget.seeds[0]
    return ensure_run(ctx, BY_NAME[model], seed), piece_recipe(ctx, exp, model)


def _cross(ctx: Context, exp: Experiment, models: Sequence[str] | None = None) -> None:
    seed = ctx.budget.seeds[0]
    for model in wanted(exp, models):
        item = f"{model}-s{seed}"
        if piece_done(ctx, exp, item) or not has_finished(ctx, exp, model, [seed]):
            continue
        run, recipe = _first_run(ctx, exp, model)
        started = time.perf_counter()
        pred = predict_checkpoint(run, dataset="mnist", data_dir=ctx.data_dir)
        report = write_report(pred, ctx.root / "evaluation" / f"{model}-s{seed}_mnist", name=f"{model} on MNIST",
                              save_predictions=False)
        record_piece(ctx, exp, item, recipe, {"model": model, "accuracy": report["accuracy"]},
                time.perf_counter() - started, seed=seed, model=model, report=R.report_section(report),
                extra=scored_runs(ctx, model, [seed], [run]))


def _gradcam(ctx: Context, exp: Experiment, models: Sequence[str] | None = None) -> None:
    """The gallery: the most confident right and wrong test image per class, explained; a committed figure."""
    seed = ctx.budget.seeds[0]
    data = None
    for model in wanted(exp, models):
        item = f"{model}-s{seed}"
        if piece_done(ctx, exp, item) or not has_finished(ctx, exp, model, [seed]):
            continue
        run, recipe = _first_run(ctx, exp, model)
        started = time.perf_counter()
        data = data or load_dataset("fashion", ctx.data_dir)
        trained = load_trained(run)
        images, labels = data.test_images[:GALLERY_IMAGES], data.test_labels[:GALLERY_IMAGES]
        chosen = default_selection(trained.predict_proba(images), labels)[:12]
        picked = images[torch.tensor(chosen)].unsqueeze(1)
        result = explain(trained, picked.float() / 255.0)
        items = explained_items(result, picked, trained.class_names, labels=[int(labels[i]) for i in chosen])
        figure = ctx.root / "gradcam" / f"{model}.png"
        save_grid(items, figure, per_row=3, title=f"{METHODS[result.method].title}: {model} ({ctx.budget.name} "
                                                 f"budget), most confident right and wrong test image per class")
        committed = figure_path(ctx, f"gradcam_{model}.png")
        write_bytes_atomic(committed, figure.read_bytes())
        record_piece(ctx, exp, item, recipe, {"model": model, "method": result.method, "layer": result.layer,
                                         "images": [int(i) for i in chosen]},
                time.perf_counter() - started, seed=seed, model=model, extra=scored_runs(ctx, model, [seed], [run]),
                figure={"path": committed.relative_to(ctx.repo).as_posix(), "sha256": sha256_file(committed)})


def figure_path(ctx: Context, name: str) -> Path:
    """Committed figures of a budget: ``docs/results/<budget>/<name>`` in the repository."""
    return ctx.repo / "docs" / "results" / ctx.budget.name / name


def _explain(ctx: Context, exp: Experiment, models: Sequence[str] | None = None) -> None:
    """Whether the maps can be trusted (blank, deletion, randomisation): one record per model's first seed."""
    seed = ctx.budget.seeds[0]
    data = None
    for model in wanted(exp, models):
        item = f"{model}-s{seed}"
        if piece_done(ctx, exp, item) or not has_finished(ctx, exp, model, [seed]):
            continue
        run, recipe = _first_run(ctx, exp, model)
        started = time.perf_counter()
        data = data or load_dataset("fashion", ctx.data_dir)
        out = ctx.root / "explain" / model
        summary = run_checks(load_trained(run), data.test_images[:EXPLAIN_CHECK_IMAGES],
                             data.test_labels[:EXPLAIN_CHECK_IMAGES], out, sanity_n=EXPLAIN_CHECK_SANITY)
        figures = {}
        for name in sorted({summary["figures"]["deletion_insertion"], summary["figures"]["randomisation"]}):
            committed = figure_path(ctx, f"explain/{model}/{name}")
            write_bytes_atomic(committed, (out / name).read_bytes())
            figures[name] = committed.relative_to(ctx.repo).as_posix()
        record_piece(ctx, exp, item, recipe, R.explain_metrics(summary, ctx.root), time.perf_counter() - started,
                seed=seed, model=model, figures=figures, extra=scored_runs(ctx, model, [seed], [run]))


def _robustness(ctx: Context, exp: Experiment, models: Sequence[str] | None = None) -> None:
    """Each model's seeds as one ensemble: members and ensemble on corruptions, OOD sets, calibration."""
    seeds = list(ctx.budget.seeds)
    if len(seeds) < 2:
        ctx.log(f"  robustness: the budget has {len(seeds)} seed; an ensemble needs two (`--seeds 42 43`). Skipped.")
        return
    for model in wanted(exp, models):
        item = model
        recipe = {**piece_recipe(ctx, exp, model), "seeds": seeds}
        if piece_done(ctx, exp, item, seeds) or not has_finished(ctx, exp, model, seeds):
            continue
        runs = [ensure_run(ctx, BY_NAME[model], seed) for seed in seeds]
        members = [ctx.run_name(model, seed) for seed in seeds]
        started = time.perf_counter()
        ctx.log(f"  robustness: {model} x{len(runs)} on fashion-c, OOD {', '.join(ROBUSTNESS_OOD)}, calibrated")
        summary = evaluate_ensemble(runs, out=robustness_dir(ctx.root, model), corrupted="fashion-c",
                                    ood=ROBUSTNESS_OOD, calibrate=True, name=f"{model}x{len(runs)}",
                                    data_dir=ctx.data_dir, plots=True, extra={"seeds": members},
                                    device="cuda" if ctx.gpus else "cpu")  # scored where the runs were trained
        record_piece(ctx, exp, item, recipe, R.ensemble_metrics(summary),
                time.perf_counter() - started, model=model, extra=scored_runs(ctx, model, seeds, runs))


def _photos(ctx: Context, exp: Experiment, models: Sequence[str] | None = None) -> None:
    """The labelled development photos: every seed of the photo recipe, their ensemble, and ``deep`` beside."""
    folder = photos_dir(ctx.data_dir)
    assert folder is not None  # the piece's ``unavailable`` check ran first
    options = PhotoOptions(preprocess=PHOTO_PREPROCESS)
    photo, *others = PHOTO_MODELS
    targets: list[tuple[str, str, list[int]]] = [(photo, f"{photo}-s{seed}", [seed]) for seed in ctx.budget.seeds]
    if len(ctx.budget.seeds) > 1:
        targets.append((photo, f"{photo}-ensemble", list(ctx.budget.seeds)))
    targets += [(model, f"{model}-s{ctx.budget.seeds[0]}", [ctx.budget.seeds[0]]) for model in others]
    targets = [t for t in targets if t[0] in wanted(exp, models)]
    for model, item, seeds in targets:
        recipe = {**piece_recipe(ctx, exp, model), "seeds": seeds}
        if piece_done(ctx, exp, item, seeds) or not has_finished(ctx, exp, model, seeds):
            continue
        runs = [ensure_run(ctx, BY_NAME[model], seed) for seed in seeds]
        started = time.perf_counter()
        result = predict_photos(runs, [str(folder)], out=ctx.root / "photos" / item, options=options)
        if result.summary is None:
            raise FmnistError(f"{folder} holds no labelled photos; the photo piece needs labels.csv.")
        record_piece(ctx, exp, item, recipe, {"model": model, "seeds": seeds, "failures": result.failures,
                                         **R.photo_metrics(result.summary)},
                time.perf_counter() - started, seed=seeds[0] if len(seeds) == 1 else None, model=model,
                extra=scored_runs(ctx, model, seeds, runs))


def wanted(exp: Experiment, models: Sequence[str] | None) -> list[str]:
    """The models a downstream piece scores now: all it needs, or only those just trained (``models``)."""
    return [m for m in exp.needs if models is None or m in models]


def scored_runs(ctx: Context, model: str, seeds: Sequence[int], runs: Sequence[Path]) -> dict[str, Any]:
    """Which runs a downstream piece scored: per seed its precision, commit and best checkpoint, and whether that
    checkpoint is the one the seed's training record names.

    Why: a run folder lost with its machine is trained again before it is scored, perhaps on another CPU or in
    another precision (the default follows the hardware); it is then a sibling of the recorded model, not the
    model itself, and the record must say so rather than pass its scores off as the row's.
    """
    scored = []
    for seed, run in zip(seeds, runs, strict=True):
        metrics = read_json(run / "metrics.json") or {}
        checkpoint = checkpoint_entry(ctx, metrics.get("best_checkpoint"))
        training = find_record(ctx.ledger, ctx.budget.name, model, f"s{seed}", ctx.device)
        named = ((training or {}).get("provenance") or {}).get("checkpoint") or {}
        scored.append({"seed": seed, "precision": metrics.get("precision"), "git_commit": metrics.get("git_commit"),
                       "checkpoint": checkpoint,
                       "is_recorded_checkpoint": bool(checkpoint and named.get("sha256") == checkpoint["sha256"])})
    return {"scored_runs": scored}


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


def _record_not_run(ctx: Context, exp: Experiment, reason: str) -> None:
    """A piece this machine cannot run: a record with the reason, so every page names it."""
    recipe = {"experiment": exp.name, "reason": "unavailable"}
    record = find_record(ctx.ledger, ctx.budget.name, exp.name, NOT_RUN_ITEM, ctx.device)
    if record is None or record["metrics"].get("reason") != reason:
        record_piece(ctx, exp, NOT_RUN_ITEM, recipe, {"status": "not run", "reason": reason}, None)


def run_experiment(ctx: Context, exp: Experiment, selected: Sequence[Experiment] = (),
                   models: Sequence[str] | None = None) -> bool:
    """Run (or resume) one piece; False when this machine cannot run it (the reason is recorded for the page).

    A training piece is followed at once by the downstream pieces among ``selected`` that score its model
    (``models`` restricts such a piece to those). Why: run folders live as long as their machine; scoring a model
    while its checkpoints are fresh means a machine lost mid-budget costs one model's work, not every model's.
    """
    if exp.unavailable is not None:
        reason = exp.unavailable(ctx.data_dir)
        if reason:
            if is_rank_zero():
                _record_not_run(ctx, exp, reason)
            ctx.log(f"  {exp.name}: not run on this machine: {reason}.")
            return False
    if exp.kind == "train":
        for seed in ctx.budget.seeds:
            _train(ctx, exp, seed)
        for downstream in selected:
            if exp.name in downstream.needs:
                ctx.log(f"[{ctx.budget.name}] {downstream.name} of {exp.name}, while its run folders are here")
                run_experiment(ctx, downstream, models=(exp.name,))
    elif exp.kind == "cv":
        _cv(ctx, exp)
    elif not is_rank_zero():  # every process takes part in DDP training; the rest is rank 0's
        return True
    else:
        PIECES[exp.kind](ctx, exp, models)
    return True


PIECES: dict[str, Callable[[Context, Experiment, Sequence[str] | None], None]] = {
    "baseline": _baseline, "cross": _cross, "gradcam": _gradcam, "explain": _explain, "robustness": _robustness,
    "photos": _photos,
}


def command_line() -> str | None:
    """The command that is running, as a user would retype it (None when called from Python)."""
    if sys.argv[1:2] == ["reproduce"]:  # fmnist reproduce (or python -m fmnist.commands reproduce)
        return "fmnist " + " ".join(sys.argv[1:])
    if Path(sys.argv[0]).name in ("__main__.py", "reproduce.py") or sys.argv[0].endswith("fmnist.reproduce"):
        return "python -m fmnist.reproduce " + " ".join(sys.argv[1:])
    return None


def reproduce(budget: str | Budget, *, only: list[str] | None = None, gpus: int = 0, root: str | Path | None = None,
              data_dir: str | None = None, report: bool = True, repo: Path | None = None,
              ledger: Path | None = None, seeds: list[int] | None = None,
              log: Callable[[str], None] = print) -> Path | None:
    """Run (or resume) the selected experiments under ``budget``; write the results pages. Returns RESULTS path.

    ``repo`` is where RESULTS*.md, README, the HTML page and the committed figures go (default: the working
    directory); ``ledger`` where records go (default ``<repo>/results``).
    """
    base = budget if isinstance(budget, Budget) else get_budget(budget)
    spec = Budget(**{**base.__dict__, "seeds": tuple(seeds)}) if seeds else base
    repo = Path(repo) if repo else Path.cwd()
    ctx = Context(spec, Path(root) if root else DEFAULT_ROOT / spec.name, gpus, data_dir, log,
                  ledger=Path(ledger) if ledger else repo / "results", repo=repo, command=command_line())
    ctx.root.mkdir(parents=True, exist_ok=True)
    selected = select(only)
    for exp in selected:
        log(f"[{spec.name}] {exp.name}: {exp.title}")
        run_experiment(ctx, exp, selected)
    if not report or not is_rank_zero():
        return None
    return write_results(ctx.ledger, base, repo=repo)
