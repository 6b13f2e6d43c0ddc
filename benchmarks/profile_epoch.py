"""Where one training epoch's time goes: convolutions, BatchNorm, data and augmentation, optimizer, Python.

Trains a recipe (default ``configs/speedrun.yaml``) for ``--epochs`` epochs through the package's own stack
(``fmnist.training.fit``) and profiles the last one with ``torch.profiler``. Two views of the same epoch:

* **phases** (wall clock, from Lightning's hooks): fetching and augmenting the batch, forward, backward,
  optimizer step, and what remains (Lightning's loop, logging, Python);
* **operators** (``self`` CPU time of every aten operator on the training thread, summed by kind): what the
  phases spend their time in. The operators' total against the epoch's wall time is the share spent in
  compiled kernels; the rest is Python and the framework around them.

    python benchmarks/profile_epoch.py                          # the 91% recipe, 2 epochs, profile the 2nd
    python benchmarks/profile_epoch.py --config configs/deep.yaml --epochs 1
    python benchmarks/profile_epoch.py --config configs/deep.yaml --set trainer.callbacks=null \\
        --set model.label_smoothing=0 --set trainer.precision=bf16-mixed     # study B's plain recipe, in bf16

Prints two Markdown tables; ``--out`` writes them with the raw numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from fmnist.training import fit  # noqa: E402

# Operator name fragments -> kind; the first match wins (backward kernels carry their forward's name).
KINDS: list[tuple[str, tuple[str, ...]]] = [
    ("convolution", ("conv", "mkldnn_convolution")),
    ("batch norm", ("batch_norm",)),
    ("pooling", ("pool",)),
    ("activation", ("relu", "gelu", "threshold")),
    ("augmentation (warp, flips)", ("grid_sampler", "affine_grid", "flip")),
    ("loss + softmax", ("cross_entropy", "log_softmax", "nll_loss", "softmax")),
    ("linear", ("addmm", "linear", "mm")),
    ("optimizer (foreach updates)", ("_foreach", "sgd", "adam", "lerp")),
    ("data (index, copy, cast)", ("index", "copy_", "_to_copy", "clone", "contiguous", "div", "sub", "stack", "cat")),
]


def kind_of(name: str) -> str:
    for kind, fragments in KINDS:
        if any(fragment in name for fragment in fragments):
            return kind
    return "other operators"


class EpochProfiler(L.Callback):
    """Profiles the last training epoch: phase wall times from the hooks, operator times from torch.profiler."""

    def __init__(self) -> None:
        self.phase_seconds: dict[str, float] = defaultdict(float)
        self.epoch_seconds = 0.0
        self.steps = 0
        self.operators: dict[str, float] = defaultdict(float)
        self.unsorted: dict[str, float] = {}  # the operators counted as "other", by name
        self._profiler: profile | None = None
        self._mark = 0.0
        self._epoch_start = 0.0

    def _last_epoch(self, trainer: L.Trainer) -> bool:
        return trainer.current_epoch == trainer.max_epochs - 1

    def _lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.phase_seconds[phase] += now - self._mark
        self._mark = now

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._last_epoch(trainer):
            self._profiler = profile(activities=[ProfilerActivity.CPU])
            self._profiler.__enter__()
            self._epoch_start = self._mark = time.perf_counter()

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if self._profiler is not None:
            self._lap("fetch + augment the batch, loop")

    def on_before_backward(self, trainer: L.Trainer, *args: Any) -> None:
        if self._profiler is not None:
            self._lap("forward + loss")

    def on_after_backward(self, trainer: L.Trainer, *args: Any) -> None:
        if self._profiler is not None:
            self._lap("backward")

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self._profiler is not None:
            self._lap("optimizer step, schedule, EMA, logging")
            self.steps += 1

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._profiler is None:
            return
        self._lap("epoch end (metrics, logging)")
        self.epoch_seconds = time.perf_counter() - self._epoch_start
        self._profiler.__exit__(None, None, None)
        for event in self._profiler.key_averages():
            if event.key.startswith("aten::"):
                kind = kind_of(event.key[len("aten::"):])
                self.operators[kind] += event.self_cpu_time_total / 1e6
                if kind == "other operators":
                    self.unsorted[event.key] = event.self_cpu_time_total / 1e6
        self._profiler = None


def markdown(profiler: EpochProfiler) -> str:
    total = profiler.epoch_seconds
    lines = [f"epoch of {profiler.steps} steps: {total:.2f} s wall", "",
             "| phase (wall clock) | s | share |", "|---|---:|---:|"]
    lines += [f"| {phase} | {seconds:.2f} | {seconds / total:.0%} |"
              for phase, seconds in sorted(profiler.phase_seconds.items(), key=lambda kv: -kv[1])]
    in_ops = sum(profiler.operators.values())
    lines += ["", "| operators (self CPU time, training thread) | s | share of the epoch |", "|---|---:|---:|"]
    lines += [f"| {kind} | {seconds:.2f} | {seconds / total:.0%} |"
              for kind, seconds in sorted(profiler.operators.items(), key=lambda kv: -kv[1])]
    lines += [f"| **all operators** | {in_ops:.2f} | {in_ops / total:.0%} |",
              f"| Python, Lightning and the profiler around them | {total - in_ops:.2f} | "
              f"{(total - in_ops) / total:.0%} |"]
    largest = sorted(profiler.unsorted.items(), key=lambda kv: -kv[1])[:6]
    if largest:
        lines += ["", "largest of the other operators: " + ", ".join(f"{name} {seconds:.2f} s"
                                                                    for name, seconds in largest)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/speedrun.yaml")
    parser.add_argument("--epochs", type=int, default=2, help="epochs to train; the last one is profiled")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--logdir", default="lightning_logs/profile_epoch")
    parser.add_argument("--out", default=None, help="JSON with the tables' numbers")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a dotted config setting, VALUE read as YAML (e.g. trainer.precision=bf16-mixed, "
                             "trainer.callbacks=null); repeatable")
    args = parser.parse_args(argv)
    settings = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set takes KEY=VALUE, got {item!r}")
        settings[key] = yaml.safe_load(value)
    profiler = EpochProfiler()
    fit(config=ROOT / args.config, seed=args.seed, epochs=args.epochs, logdir=args.logdir, callbacks=[profiler],
        overrides={"trainer.enable_progress_bar": False, "trainer.enable_model_summary": False, **settings})
    text = markdown(profiler)
    print(f"\n{args.config} {settings or ''}, torch {torch.__version__}, {torch.get_num_threads()} threads\n\n{text}")
    if args.out:
        Path(args.out).write_text(json.dumps({
            "config": args.config, "settings": settings, "epoch_seconds": profiler.epoch_seconds, "steps": profiler.steps,
            "phases": dict(profiler.phase_seconds), "operators": dict(profiler.operators),
            "other_operators": profiler.unsorted, "markdown": text},
            indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
