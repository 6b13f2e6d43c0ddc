"""Time to accuracy (issue 14): the speedrun recipes against ``deep`` and ``vggbn``, every run a fresh process.

Each training run is ``python train.py fit --config configs/<recipe>.yaml --seed_everything S ...`` in its own
process, timed from just before the process starts to its exit, i.e. Python and library imports, reading the
data, training, the final validation and the test score included. ``metrics.json`` of the run gives the rest:
the training loop alone (the sum of ``epoch_seconds``: training plus any per-epoch validation) and the test
accuracy. The test set only scores finished runs; nothing here chooses a setting by it.

Targets and their recipes (settings chosen on the validation split, see docs/speedrun.md):

    91%  configs/speedrun.yaml      93%  configs/speedrun-93.yaml      94%  configs/speedrun-94.yaml

The timed runs train on the data module's default 51,000 training images (9,000 stay out for validation);
``--train-on-validation`` trains the speedrun recipes on all 60,000 (the issue allows it once the settings are
fixed: they were chosen on the validation split first) through the sweep's final-fit callback
``fmnist.sweep.callbacks.TrainOnValidation``. The baselines keep their recipe, which early-stops on validation.

Baselines (``--baselines deep vggbn``) run their own studied recipes (configs/deep.yaml, configs/vggbn.yaml)
once per ``--baseline-seeds`` seed and keep a checkpoint after every epoch; after the run, each checkpoint is
scored on the test set (outside the timed process). A baseline's time to a target is the time its run would
have taken had it stopped after the first epoch whose checkpoint reaches the target: the process time minus
the epochs it trained after that one. ``ratio`` is the speedrun's mean process time over that time.

    python benchmarks/time_to_accuracy.py --seeds 5                        # everything (vggbn: ~30 min)
    python benchmarks/time_to_accuracy.py --seeds 5 --targets 91 --baselines deep
    python benchmarks/time_to_accuracy.py --seeds 1 --targets 91 --baselines none --dry-run

``--warm`` starts a warm server (``fmnist warm start``) on a private socket first and hands every run to it: the
process time then starts with torch and Lightning already imported (records and README rows say "warm server");
a run the server did not take is reported as failed, never as a warm time.

Timings are only as good as the machine is quiet: the load average is recorded before and after every run.
``--omp-wait-policy passive`` stops OpenMP threads busy-waiting (far cheaper on a machine shared with other
jobs); ``--threads N`` pins torch's threads (``--model.cpu_threads N``). Every finished speedrun run becomes a
record of the results ledger (``results/speed/<recipe>/s<seed>.cpu.json``, ``--ledger`` to change), from which
README's speed table is generated; the whole invocation (baseline curves included) is also written as one JSON
document to ``docs/results/benchmarks/time_to_accuracy-<date>.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RECIPES = {91: "configs/speedrun.yaml", 93: "configs/speedrun-93.yaml", 94: "configs/speedrun-94.yaml"}
# Issue 32's goals: process wall seconds (start to test score, mean over seeds) within which each target counts as met.
GOAL_SECONDS = {91: 12.0, 93: 120.0, 94: 300.0, 95: 1800.0}
BASELINES = {"deep": "configs/deep.yaml", "vggbn": "configs/vggbn.yaml"}
EPOCH_FILE = re.compile(r"epoch=(\d+)\.ckpt$")
TRAIN_ON_VALIDATION = "fmnist.sweep.callbacks.TrainOnValidation"
TRAIN_IMAGES_DEFAULT = "51,000 (the data module's default split; 9,000 validation images are not trained on)"
TRAIN_IMAGES_ALL = ("speedrun recipes: all 60,000 (training + validation images, --train-on-validation); "
                    "baselines: 51,000")


@dataclass
class RunRecord:
    """One timed training process and what it scored."""

    label: str
    config: str
    seed: int
    command: list[str]
    run_dir: str
    returncode: int | None = None
    process_seconds: float | None = None
    fit_seconds: float | None = None  # metrics.json wall_seconds: fit start -> test score written
    loop_seconds: float | None = None  # sum of epoch_seconds: the training loop (with per-epoch validation)
    epoch_seconds: list[float] = field(default_factory=list)
    epochs: int | None = None
    test_acc: float | None = None
    val_acc: float | None = None
    load_before: list[float] = field(default_factory=list)
    load_after: list[float] = field(default_factory=list)
    curve: list[dict[str, float]] = field(default_factory=list)  # baselines: per epoch, test acc and time
    warm_server: bool | None = None  # metrics.json: the run started in a warm server (fmnist warm start)
    error: str | None = None


def train_command(config: str, seed: int, logdir: Path, name: str, version: str, extra: list[str],
                  every_epoch_checkpoints: bool = False) -> list[str]:
    """The ``train.py fit`` command line of one timed run."""
    cmd = [sys.executable, str(ROOT / "train.py"), "fit", "--config", str(ROOT / config),
           "--seed_everything", str(seed),
           "--trainer.logger.init_args.save_dir", str(logdir),
           "--trainer.logger.init_args.name", name,
           "--trainer.logger.init_args.version", version,
           "--trainer.enable_progress_bar", "false"]
    if every_epoch_checkpoints:  # a checkpoint per epoch, named epoch=NN.ckpt, for the baselines' accuracy curve
        cmd += ["--checkpoint.save_top_k", "-1", "--checkpoint.every_n_epochs", "1",
                "--checkpoint.filename", "{epoch:02d}"]
    return cmd + extra


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def run_timed(record: RunRecord, env: dict[str, str]) -> RunRecord:
    """Run ``record.command`` as a fresh process, time it, and read its ``metrics.json``."""
    run_dir = Path(record.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    record.load_before = load_average()
    with open(run_dir / "train.log", "w") as log:
        started = time.perf_counter()
        proc = subprocess.run(record.command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        record.process_seconds = round(time.perf_counter() - started, 2)
    record.load_after = load_average()
    record.returncode = proc.returncode
    metrics_path = run_dir / "metrics.json"
    if proc.returncode != 0 or not metrics_path.is_file():
        tail = (run_dir / "train.log").read_text(errors="replace").strip().splitlines()[-5:]
        record.error = f"exit {proc.returncode}; no metrics.json" if not metrics_path.is_file() else \
            f"exit {proc.returncode}"
        record.error += "; log ends: " + " | ".join(tail)
        return record
    metrics = json.loads(metrics_path.read_text())
    record.fit_seconds = metrics.get("wall_seconds")
    record.epoch_seconds = [float(s) for s in metrics.get("epoch_seconds") or []]
    record.loop_seconds = round(sum(record.epoch_seconds), 2)
    record.epochs = metrics.get("epochs")
    record.test_acc = metrics.get("test_acc")
    record.val_acc = metrics.get("val_acc")
    record.warm_server = metrics.get("warm_server")
    return record


def epoch_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """``(epoch counted from 1, path)`` of every ``epoch=NN.ckpt`` in the run's checkpoints folder."""
    found = []
    for path in (run_dir / "checkpoints").glob("epoch=*.ckpt"):
        match = EPOCH_FILE.search(path.name)
        if match:
            found.append((int(match.group(1)) + 1, path))
    return sorted(found)


def stopped_after(process_seconds: float, epoch_seconds: list[float], epoch: int) -> float:
    """The process time of the same run had it stopped after ``epoch``: minus the epochs trained after it."""
    return round(process_seconds - sum(epoch_seconds[epoch:]), 2)


def accuracy_curve(record: RunRecord, test_acc_of: Any) -> list[dict[str, float]]:
    """Per saved epoch: its checkpoint's test accuracy and the run's time had it stopped there."""
    curve = []
    for epoch, path in epoch_checkpoints(Path(record.run_dir)):
        if epoch > len(record.epoch_seconds):
            continue
        curve.append({"epoch": epoch, "test_acc": round(float(test_acc_of(path)), 4),
                      "seconds": stopped_after(record.process_seconds, record.epoch_seconds, epoch)})
    return curve


def time_to_target(curve: list[dict[str, float]], target: float) -> float | None:
    """Seconds until the first epoch whose test accuracy reaches ``target`` (``None``: never)."""
    return next((point["seconds"] for point in curve if point["test_acc"] >= target), None)


def checkpoint_test_accuracy(path: Path, data_dir: str | None) -> float:
    """Test accuracy of one checkpoint through the package's own evaluator."""
    sys.path.insert(0, str(ROOT))
    from fmnist.evaluation.predict import evaluate  # heavy import: only when a baseline curve is scored

    predictions = evaluate(path, "fashion", "test", data_dir=data_dir)
    return float((predictions.probs.argmax(axis=1) == predictions.labels).mean())


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize_target(target: int, runs: list[RunRecord], baselines: dict[str, list[RunRecord]]) -> dict[str, Any]:
    """The row of one target: speedrun mean +- std over seeds, and each baseline's time to the same accuracy."""
    done = [r for r in runs if r.test_acc is not None]
    acc_mean, acc_std = mean_std([r.test_acc for r in done])
    process_mean, process_std = mean_std([r.process_seconds for r in done])
    loop_mean, _ = mean_std([r.loop_seconds for r in done])
    fit_mean, _ = mean_std([r.fit_seconds for r in done if r.fit_seconds is not None])
    row: dict[str, Any] = {
        "target": target / 100, "recipe": runs[0].config if runs else None, "seeds": [r.seed for r in done],
        "failed_seeds": [r.seed for r in runs if r.test_acc is None],
        "test_acc_mean": acc_mean, "test_acc_std": acc_std, "test_acc_min": min((r.test_acc for r in done), default=None),
        "reached": acc_mean is not None and acc_mean >= target / 100,
        "goal_seconds": GOAL_SECONDS.get(target),
        "process_seconds_mean": process_mean, "process_seconds_std": process_std,
        "fit_seconds_mean": fit_mean, "loop_seconds_mean": loop_mean,
        "epochs": sorted({r.epochs for r in done if r.epochs is not None}),
        "baselines": {},
    }
    for name, records in baselines.items():
        times = [time_to_target(r.curve, target / 100) for r in records if r.curve]
        reached = [t for t in times if t is not None]
        best = max((p["test_acc"] for r in records for p in r.curve), default=None)
        entry: dict[str, Any] = {"seconds_to_target": statistics.fmean(reached) if reached else None,
                                 "runs_reaching": len(reached), "runs": len(times), "best_test_acc": best}
        if reached and process_mean is not None:
            entry["ratio"] = process_mean / entry["seconds_to_target"]
        row["baselines"][name] = entry
    row["goal_met"] = bool(row["reached"] and row["goal_seconds"] is not None and process_mean is not None
                           and process_mean <= row["goal_seconds"])
    return row


def _fmt(value: float | None, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def table(rows: list[dict[str, Any]], baseline_names: list[str]) -> str:
    """The per-target summary as a Markdown table."""
    head = ["target", "recipe", "seeds", "test acc (mean ± std)", "reached", "wall s (process)", "training loop s",
            "goal s", "goal met"]
    for name in baseline_names:
        head += [f"{name}: s to target", f"speedrun / {name}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        acc = (f"{100 * row['test_acc_mean']:.2f} ± {100 * row['test_acc_std']:.2f}%"
               if row["test_acc_mean"] is not None else "failed")
        cells = [f"{100 * row['target']:.0f}%", Path(row["recipe"] or "-").name, str(len(row["seeds"])), acc,
                 "yes" if row["reached"] else "no",
                 _fmt(row["process_seconds_mean"], ".1f") + (f" ± {row['process_seconds_std']:.1f}"
                                                            if row["process_seconds_std"] else ""),
                 _fmt(row["loop_seconds_mean"], ".1f"), _fmt(row.get("goal_seconds"), ".0f"),
                 "**yes**" if row.get("goal_met") else "no"]
        for name in baseline_names:
            entry = row["baselines"].get(name, {})
            if entry.get("seconds_to_target") is not None:
                cells += [f"{entry['seconds_to_target']:.1f}", f"{entry['ratio']:.3f}" if "ratio" in entry else "-"]
            else:
                best = entry.get("best_test_acc")
                cells += [f"not reached (best {100 * best:.2f}%)" if best is not None else "-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, nargs="+", default=sorted(RECIPES), choices=sorted(RECIPES),
                        help="target test accuracies in percent (each has its recipe)")
    parser.add_argument("--seeds", type=int, default=5, help="speedrun seeds per target (42, 43, ...)")
    parser.add_argument("--first-seed", type=int, default=42)
    parser.add_argument("--baselines", nargs="+", default=list(BASELINES), choices=[*BASELINES, "none"])
    parser.add_argument("--baseline-seeds", type=int, default=1, help="runs per baseline (its full recipe)")
    parser.add_argument("--threads", default=None,
                        help="--model.cpu_threads for every run: an integer or 'auto' (default: torch's own count)")
    parser.add_argument("--omp-wait-policy", choices=("default", "passive", "active"), default="default",
                        help="OMP_WAIT_POLICY of the training processes")
    parser.add_argument("--data-dir", default=None, help="--data.data_dir for every run (default: the search order)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="extra LightningCLI setting for every run, e.g. --set trainer.max_epochs=1 (repeatable)")
    parser.add_argument("--logdir", default="lightning_logs/time_to_accuracy",
                        help="where the runs' folders go (one per recipe and seed)")
    parser.add_argument("--out", default=None,
                        help="JSON record (default: docs/results/benchmarks/time_to_accuracy-<date>.json; "
                             "'-' prints it only)")
    parser.add_argument("--train-on-validation", action="store_true",
                        help="train the speedrun recipes on all 60,000 training images (not the baselines)")
    parser.add_argument("--ledger", default=str(ROOT / "results"),
                        help="results ledger the speedrun runs are recorded in ('-': none)")
    parser.add_argument("--warm", action="store_true",
                        help="hand every run to a warm server started for the purpose (`fmnist warm start`): the "
                             "process time then leaves out the library imports; records say so")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    return parser.parse_args(argv)


def extra_arguments(args: argparse.Namespace) -> list[str]:
    """The settings every run shares, as ``train.py fit`` arguments."""
    extra: list[str] = []
    if args.threads is not None:
        extra += ["--model.cpu_threads", str(args.threads)]
    if args.data_dir:
        extra += ["--data.data_dir", args.data_dir]
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set takes KEY=VALUE (e.g. trainer.max_epochs=1), got {item!r}")
        extra += [f"--{key}", value]
    return extra


def machine() -> dict[str, Any]:
    cpu = platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


def ledger_record(record: RunRecord, target: int, args: argparse.Namespace) -> Path:
    """One timed speedrun run as a record of the results ledger (README's speed table reads these)."""
    sys.path.insert(0, str(ROOT))
    from fmnist.ledger import write_record  # the package, only once a run has finished
    from fmnist.reproduce.experiments import device_of
    from fmnist.reproduce.speed import time_to_accuracy_record

    run_metrics = json.loads((Path(record.run_dir) / "metrics.json").read_text())
    import yaml  # values as the CLI reads them (``trainer.max_epochs=1`` -> 1)

    overrides = {key: yaml.safe_load(value) for key, _, value in (item.partition("=") for item in args.overrides)}
    device, device_name = device_of(0)
    document = time_to_accuracy_record(
        name=Path(record.config).stem, config=str(ROOT / record.config), seed=record.seed, target=target / 100,
        train_on_validation=args.train_on_validation, overrides=overrides or None,
        metrics={"test_acc": record.test_acc, "val_acc": record.val_acc, "process_seconds": record.process_seconds,
                 "fit_seconds": record.fit_seconds, "loop_seconds": record.loop_seconds, "epochs": record.epochs,
                 "epoch_seconds": record.epoch_seconds, "load_before": record.load_before,
                 "load_after": record.load_after},
        device=device, device_name=device_name, command=" ".join(["python", *sys.argv]), run_metrics=run_metrics,
        warm_server=args.warm)
    return write_record(Path(args.ledger), document)


@contextlib.contextmanager
def warm_server(env: dict[str, str]) -> Iterator[float]:
    """A warm server on a private socket for the runs of a benchmark (``env`` is pointed at it), stopped after.

    Yields the seconds ``fmnist warm start`` took to report the server ready. Shared by ``startup.py``.
    """
    with tempfile.TemporaryDirectory(prefix="fw-") as folder:
        env.pop("FMNIST_WARM", None)
        env["FMNIST_WARM_SOCKET"] = str(Path(folder) / "warm.sock")
        clock = time.perf_counter()
        started = subprocess.run([sys.executable, "-m", "fmnist.commands", "warm", "start"], cwd=ROOT, env=env,
                                 capture_output=True, text=True, timeout=600)
        ready = time.perf_counter() - clock
        if started.returncode != 0:
            raise SystemExit(f"the warm server did not start: {started.stderr.strip() or started.stdout.strip()}")
        print(started.stdout.strip(), flush=True)
        try:
            yield ready
        finally:
            subprocess.run([sys.executable, "-m", "fmnist.commands", "warm", "stop"], cwd=ROOT, env=env,
                           capture_output=True)


def run_and_report(group: str, record: RunRecord, env: dict[str, str], args: argparse.Namespace,
                   results: dict[str, list[RunRecord]]) -> None:
    """One timed run: run it, score a baseline's curve, record a speedrun in the ledger, print one line."""
    print(f"-- {record.label} seed {record.seed}: {' '.join(record.command[1:])}", flush=True)
    run_timed(record, env)
    if args.warm and record.error is None and not record.warm_server:
        record.error = "not served by the warm server (see train.log)"  # never a cold time reported as warm
    if record.error is None and group.startswith("baseline:"):
        record.curve = accuracy_curve(record, lambda path: checkpoint_test_accuracy(path, args.data_dir))
    if record.error is None and group.startswith("target") and args.ledger != "-":
        print(f"   recorded {ledger_record(record, int(group.removeprefix('target')), args)}", flush=True)
    results.setdefault(group, []).append(record)
    status = (f"test_acc {record.test_acc:.4f}, process {record.process_seconds:.1f} s, "
              f"loop {record.loop_seconds:.1f} s" if record.error is None else f"FAILED: {record.error}")
    print(f"   {status}; load {record.load_before[0]} -> {record.load_after[0]}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    extra = extra_arguments(args)
    logdir = Path(args.logdir).resolve()
    env = dict(os.environ)
    if args.omp_wait_policy != "default":
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    baseline_names = [] if "none" in args.baselines else list(dict.fromkeys(args.baselines))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    planned: list[tuple[str, RunRecord]] = []
    speedrun_extra = [*extra, f"--trainer.callbacks+={TRAIN_ON_VALIDATION}"] if args.train_on_validation else extra
    for target in args.targets:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            name, version = f"speedrun-{target}", f"{stamp}-seed{seed}"
            planned.append((f"target{target}", RunRecord(
                f"speedrun-{target}", RECIPES[target], seed,
                train_command(RECIPES[target], seed, logdir, name, version, speedrun_extra),
                str(logdir / name / version))))
    for name in baseline_names:
        for seed in range(args.first_seed, args.first_seed + args.baseline_seeds):
            version = f"{stamp}-seed{seed}"
            planned.append((f"baseline:{name}", RunRecord(
                name, BASELINES[name], seed,
                train_command(BASELINES[name], seed, logdir, name, version, extra, every_epoch_checkpoints=True),
                str(logdir / name / version))))
    if args.dry_run:
        for _, record in planned:
            print(" ".join(record.command))
        return 0

    started = time.time()
    load_start = load_average()
    print(f"{len(planned)} runs; load average {load_start} on {os.cpu_count()} cores", flush=True)
    results: dict[str, list[RunRecord]] = {}
    with warm_server(env) if args.warm else contextlib.nullcontext():
        for group, record in planned:
            run_and_report(group, record, env, args, results)

    baselines = {name: results.get(f"baseline:{name}", []) for name in baseline_names}
    rows = [summarize_target(target, results.get(f"target{target}", []), baselines) for target in args.targets]
    print()
    print(table(rows, baseline_names))
    for name, records in baselines.items():
        for record in records:
            points = ", ".join(f"{p['epoch']}: {100 * p['test_acc']:.2f}% @ {p['seconds']:.0f} s" for p in record.curve)
            print(f"{name} seed {record.seed} test accuracy by epoch: {points or 'no curve'}")
    print(f"load average: {load_start} at the start, {load_average()} at the end")

    sys.path.insert(0, str(ROOT))
    from fmnist.runs import git_commit

    seeds = sorted({r.seed for group, records in results.items() if group.startswith("target") for r in records})
    print(f"commit {git_commit()}, {machine()['cpu']} ({machine()['cores']} cores), seeds {seeds}, "
          f"{TRAIN_IMAGES_ALL if args.train_on_validation else TRAIN_IMAGES_DEFAULT}")

    document = {
        "benchmark": "time_to_accuracy", "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "seconds": round(time.time() - started, 1), "command": [sys.executable, *sys.argv],
        "git_commit": git_commit(), "machine": machine(), "load_average_start": load_start,
        "load_average_end": load_average(), "omp_wait_policy": args.omp_wait_policy, "threads": args.threads,
        "warm_server": args.warm,
        "train_images": TRAIN_IMAGES_ALL if args.train_on_validation else TRAIN_IMAGES_DEFAULT,
        "targets": rows, "runs": [asdict(r) for group in results.values() for r in group],
    }
    if args.out != "-":
        out = Path(args.out) if args.out else ROOT / "docs" / "results" / "benchmarks" / \
            f"time_to_accuracy-{time.strftime('%Y-%m-%d')}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(document, indent=2) + "\n")
        print(f"wrote {out}")
    failed = [r for group in results.values() for r in group if r.error is not None]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
