"""``python -m fmnist.reproduce``: re-run both studies' experiments, then write RESULTS.md and an HTML page.

Every piece runs through the same code a user would call by hand (``train.py`` shorthand, the
K-fold driver, the evaluator, the baselines, Grad-CAM), in order and resumably: a training run
with a ``metrics.json`` is skipped, one killed mid-way resumes from its ``last.ckpt``, and every
other step keeps its result file. ``--budget quick`` (a 10,000-image subset, a few epochs, one
seed) finishes on a 2-core CPU in under 30 minutes and is labelled as such everywhere; ``--budget
full`` is the studies' recipe (each model's config, 3 seeds, CV up to 30 epochs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmnist.baselines import BASELINE_NAMES
from fmnist.cli import _git_commit
from fmnist.errors import FmnistError

DEFAULT_ROOT = Path("runs") / "reproduce"


@dataclass(frozen=True)
class Budget:
    name: str
    description: str
    epochs: int | None  # None: each config's own max_epochs
    train_subset: int | None  # stratified subset of the 51,000 training images (None: all)
    seeds: tuple[int, ...]
    cv_epochs: int
    cv_patience: int
    baseline_subset: int | None
    results_md: str
    report_dir: str


BUDGETS: dict[str, Budget] = {
    "quick": Budget(
        "quick", "QUICK BUDGET: every CNN on a stratified 10,000-image training subset for 3 epochs "
                 "(2 epochs per CV fold), one seed; baselines fitted on the same 10,000 images. Numbers are "
                 "far below the studies' by design: this budget checks the pipeline, not the accuracy.",
        epochs=3, train_subset=10_000, seeds=(42,), cv_epochs=2, cv_patience=8, baseline_subset=10_000,
        results_md="RESULTS-quick.md", report_dir="reports/quick"),
    "full": Budget(
        "full", "FULL BUDGET: the studies' recipe: each model's config in configs/ on all 51,000 training "
                "images (validation 9,000, test 10,000), 3 seeds per CNN; 3-fold CV up to 30 epochs with "
                "early-stopping patience 8; baselines on all 51,000 training images.",
        epochs=None, train_subset=None, seeds=(42, 43, 44), cv_epochs=30, cv_patience=8, baseline_subset=None,
        results_md="RESULTS.md", report_dir="reports"),
}


@dataclass(frozen=True)
class Experiment:
    name: str
    kind: str  # train | cv | baseline | cross | gradcam
    title: str
    group: str
    model: str | None = None
    args: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()


CROSS_MODELS = ("scratch", "deep", "transfer")
GRADCAM_MODELS = ("deep", "scratch", "resnet", "vggbn")

EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment("resnet", "train", "Study A: small ResNet", "Study A CNNs", "resnet"),
    Experiment("cnn", "train", "Study A: 3-conv CNN", "Study A CNNs", "cnn"),
    Experiment("scratch", "train", "Study B: scratch (= CNN-2), Adam", "Study B CNNs", "scratch"),
    Experiment("deep", "train", "Study B: deep (= CNN-3), BatchNorm + dropout", "Study B CNNs", "deep"),
    Experiment("cnn1", "train", "Study B: CNN-1 (no pooling)", "Study B CNNs", "cnn1"),
    Experiment("lenet5", "train", "LeNet-5", "Study B CNNs", "lenet5"),
    Experiment("transfer", "train", "Study B: transfer from MNIST (frozen base)", "Study B CNNs", "transfer"),
    Experiment("resnet18", "train", "Study B: ResNet18 32x32, frozen backbone", "Study B CNNs", "resnet18"),
    Experiment("scratch-sgd", "train", "Adam vs SGD: scratch with SGD (lr 0.01, momentum 0.9)", "Ablations",
               "scratch", ("--optimizer", "sgd")),
    Experiment("deep-no-bn-dropout", "train", "Ablation: deep without BatchNorm and dropout", "Ablations", "deep",
               ("--model.model_kwargs", json.dumps({"batchnorm": False, "dropout": 0.0}))),
    Experiment("deep-shirt-weight", "train", "Class weight: deep with study B's Shirt x2", "Ablations", "deep",
               ("--model.class_weights", "{6: 2.0}")),
    Experiment("vggbn", "train", "Ours: VGG-style CNN with BatchNorm (our recipe)", "Beyond the studies", "vggbn"),
    Experiment("cv-scratch", "cv", "3-fold CV: scratch", "Cross-validation", "scratch"),
    Experiment("cv-deep", "cv", "3-fold CV: deep", "Cross-validation", "deep"),
    *(Experiment(f"baseline-{b}", "baseline", f"Baseline: {b}", "Baselines", b)
      for b in BASELINE_NAMES),
    Experiment("mnist-cross", "cross", "Cross-dataset: Fashion-MNIST models on MNIST digits", "Cross-dataset",
               needs=CROSS_MODELS),
    Experiment("gradcam", "gradcam", "Grad-CAM gallery", "Grad-CAM", needs=GRADCAM_MODELS),
)
BY_NAME = {e.name: e for e in EXPERIMENTS}
GROUP_ALIASES = {"baselines": [e.name for e in EXPERIMENTS if e.kind == "baseline"],
                 "cv": [e.name for e in EXPERIMENTS if e.kind == "cv"],
                 "cnns": [e.name for e in EXPERIMENTS if e.kind == "train"]}


@dataclass
class Context:
    budget: Budget
    root: Path
    gpus: int
    data_dir: str | None
    log: Callable[[str], None] = print
    timings: dict[str, Any] = field(default_factory=dict)

    @property
    def results_dir(self) -> Path:
        return self.root / "results"

    def run_name(self, experiment: str, seed: int) -> str:
        return f"{experiment}-s{seed}"

    def run_dir(self, experiment: str, seed: int) -> Path:
        return self.root / self.run_name(experiment, seed) / "version_0"


# -- the pieces ---------------------------------------------------------------------------------------
def _common_train_args(ctx: Context) -> list[str]:
    args = ["--logdir", str(ctx.root), "--trainer.enable_progress_bar", str(sys.stdout.isatty()).lower()]
    if ctx.gpus:
        args += ["--gpus", str(ctx.gpus)]
    if ctx.budget.train_subset:
        args += ["--data.train_subset", str(ctx.budget.train_subset)]
    if ctx.data_dir:
        args += ["--data.data_dir", ctx.data_dir]
    return args


def _train(ctx: Context, exp: Experiment, seed: int) -> None:
    from fmnist.cli import main as train_main

    run_dir = ctx.run_dir(exp.name, seed)
    if (run_dir / "metrics.json").is_file():
        ctx.log(f"  {exp.name} seed {seed}: done already ({run_dir / 'metrics.json'})")
        return
    args = ["--model", exp.model, "--seed", str(seed), *exp.args, *_common_train_args(ctx),
            "--trainer.logger.init_args.name", ctx.run_name(exp.name, seed),
            "--trainer.logger.init_args.version", "version_0"]
    if ctx.budget.epochs:
        args += ["--epochs", str(ctx.budget.epochs)]
    if (run_dir / "checkpoints" / "last.ckpt").is_file():
        ctx.log(f"  {exp.name} seed {seed}: resuming from {run_dir / 'checkpoints' / 'last.ckpt'}")
        args.append("--resume")
    elif run_dir.exists():
        shutil.rmtree(run_dir)  # started but no checkpoint yet: start clean
    ctx.log(f"  {exp.name} seed {seed}: python train.py {' '.join(args)}")
    code = train_main(args)
    if code != 0 or (is_rank_zero() and not (run_dir / "metrics.json").is_file()):
        raise FmnistError(f"training {exp.name} (seed {seed}) did not finish (exit {code}); see the output above, "
                          f"fix it and rerun the same command: finished pieces are skipped.")


def _up_to_date(product: Path, run_dir: Path) -> bool:
    """Whether a report or figure made from a run is newer than the run itself.

    A run trained again (its folder moved away, a config changed) must not keep the old run's report.
    """
    run_metrics = run_dir / "metrics.json"
    return product.is_file() and (not run_metrics.is_file()
                                  or product.stat().st_mtime >= run_metrics.stat().st_mtime)


def _evaluate_run(ctx: Context, exp: Experiment, seed: int) -> None:
    """Full evaluator report (confusion matrix, per-class F1, errors) of a finished run, for the page."""
    from fmnist.evaluation import predict_checkpoint, write_report

    out = ctx.root / "evaluation" / ctx.run_name(exp.name, seed)
    if _up_to_date(out / "metrics.json", ctx.run_dir(exp.name, seed)):
        return
    pred = predict_checkpoint(ctx.run_dir(exp.name, seed), data_dir=ctx.data_dir)
    write_report(pred, out, name=ctx.run_name(exp.name, seed), save_predictions=False)


def _cv(ctx: Context, exp: Experiment) -> None:
    from fmnist.cli import main as train_main

    cv_file = ctx.root / f"{exp.name}-cv" / "cv_results.json"
    if cv_file.is_file() and json.loads(cv_file.read_text())["aggregate"]["folds_done"] == 3:
        ctx.log(f"  {exp.name}: done already ({cv_file})")
        return
    args = ["--model", exp.model, "--folds", "3", "--seed", str(ctx.budget.seeds[0]), *_common_train_args(ctx),
            "--epochs", str(ctx.budget.cv_epochs), "--early_stopping.patience", str(ctx.budget.cv_patience),
            "--trainer.logger.init_args.name", exp.name]
    ctx.log(f"  {exp.name}: python train.py {' '.join(args)}")
    code = train_main(args)
    if code != 0 or (is_rank_zero() and not cv_file.is_file()):
        raise FmnistError(f"{exp.name} did not finish (exit {code}); rerun the same command to resume its folds.")


def _baseline(ctx: Context, exp: Experiment) -> None:
    from fmnist.evaluation import predict_baseline, write_report

    out = ctx.root / "evaluation" / exp.name
    if (out / "metrics.json").is_file():
        ctx.log(f"  {exp.name}: done already ({out / 'metrics.json'})")
        return
    pred = predict_baseline(exp.model, data_dir=ctx.data_dir, train_subset=ctx.budget.baseline_subset,
                            artifacts_dir=ctx.root / "artifacts", log=ctx.log)
    write_report(pred, out, name=exp.name, save_predictions=False)


def _cross(ctx: Context, exp: Experiment) -> None:
    from fmnist.evaluation import predict_checkpoint, write_report

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


def _gradcam(ctx: Context, exp: Experiment) -> None:
    import torch

    from fmnist.checkpoints import load_trained
    from fmnist.data.sources import load_dataset
    from fmnist.interpret import default_selection, explain, explained_items, save_grid

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
        save_grid(items, path, per_row=3, title=f"Grad-CAM: {model} ({ctx.budget.name} budget), most confident "
                                                 f"right and wrong test image per class")


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


def run_experiment(ctx: Context, exp: Experiment) -> None:
    if exp.kind == "train":
        for seed in ctx.budget.seeds:
            _train(ctx, exp, seed)
            if is_rank_zero():
                _evaluate_run(ctx, exp, seed)
    elif exp.kind == "cv":
        _cv(ctx, exp)
    elif not is_rank_zero():  # every process takes part in DDP training; the rest is rank 0's
        return
    elif exp.kind == "baseline":
        _baseline(ctx, exp)
    elif exp.kind == "cross":
        _cross(ctx, exp)
    elif exp.kind == "gradcam":
        _gradcam(ctx, exp)
    else:  # pragma: no cover - the table above is the only source of kinds
        raise ValueError(exp.kind)


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


def machine_description() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()} CPU cores ({cpu}), {gpu}, torch {torch.__version__}, Python {platform.python_version()}"


def get_budget(name: str) -> Budget:
    if name not in BUDGETS:
        raise FmnistError(f"--budget must be one of {', '.join(BUDGETS)}, got {name!r}.")
    return BUDGETS[name]


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
        run_experiment(ctx, exp)
        seconds = time.perf_counter() - started
        if not is_rank_zero():
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
                         finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"), command=command, commit=_git_commit())
        ctx.timings[exp.name] = entry
        _save_timings(ctx)
    if not report or not is_rank_zero():
        return None
    from fmnist.results_page import write_results

    # The page shows every finished seed of the budget, not only those this invocation was asked to run.
    return write_results(ctx.root, base, ctx.timings, repo=repo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fmnist.reproduce",
        description="Re-run both studies' experiments (resumable), then write RESULTS.md and reports/index.html.",
        epilog="experiments: " + ", ".join(BY_NAME) + "; groups: " + ", ".join(GROUP_ALIASES),
    )
    parser.add_argument("--budget", default="quick", help="quick (<30 min on a 2-core CPU) or full (the studies' "
                                                          "recipe, hours on a CPU)")
    parser.add_argument("--gpus", type=int, default=0, help="GPUs per training run (0: CPU)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these experiments (or groups)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="override the budget's seeds (e.g. --seeds 42 for one seed of a full-budget run)")
    parser.add_argument("--root", default=None, help="where runs and results go (default runs/reproduce/<budget>)")
    parser.add_argument("--data-dir", default=None, help="dataset root (default: the usual search order)")
    parser.add_argument("--no-report", action="store_true", help="skip writing RESULTS.md and the HTML page")
    parser.add_argument("--report-only", action="store_true", help="only rewrite the page from finished results")
    parser.add_argument("--list", action="store_true", help="list the experiments and budgets, then exit")
    return parser


def cli_main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.list:
            for exp in EXPERIMENTS:
                print(f"{exp.name:20} {exp.kind:9} {exp.title}")
            for spec in BUDGETS.values():
                print(f"\n--budget {spec.name}: {spec.description}")
            return 0
        if args.gpus < 0:
            raise FmnistError(f"--gpus must be 0 or more, got {args.gpus}.")
        started = time.perf_counter()
        if args.report_only:
            from fmnist.results_page import write_results

            spec = get_budget(args.budget)
            root = Path(args.root) if args.root else DEFAULT_ROOT / spec.name
            if not root.is_dir():
                raise FmnistError(f"{root} does not exist: nothing to report; run the experiments first "
                                  f"(python -m fmnist.reproduce --budget {spec.name}).")
            path = write_results(root, spec, load_timings(root))
        else:
            path = reproduce(args.budget, only=args.only, gpus=args.gpus, root=args.root, data_dir=args.data_dir,
                             report=not args.no_report, seeds=args.seeds)
        print(f"finished in {time.perf_counter() - started:.0f} s" + (f"; wrote {path}" if path else ""))
        return 0
    except FmnistError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(cli_main())
