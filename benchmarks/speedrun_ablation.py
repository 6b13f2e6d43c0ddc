"""What each trick of the 91% speedrun recipe buys: the recipe as shipped against one change at a time.

Every variant is the recipe (``configs/speedrun.yaml``; ``--recipe`` for another) plus one set of ``train.py fit`` settings, run as a fresh process for
each seed and timed like ``benchmarks/time_to_accuracy.py`` times it (process start to test score). The table
shows validation accuracy (what the recipe was chosen on) next to test accuracy and seconds, mean over seeds.

    python benchmarks/speedrun_ablation.py --seeds 2                  # every variant (about 10 minutes)
    python benchmarks/speedrun_ablation.py --seeds 2 --only recipe float32
    python benchmarks/speedrun_ablation.py --seeds 2 --recipe configs/speedrun-93.yaml --only recipe muon tta-shift

Records go to ``docs/results/benchmarks/speedrun_ablation-<recipe>-<date>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from time_to_accuracy import ROOT, RunRecord, load_average, machine, run_timed, train_command  # noqa: E402

RECIPE = "configs/speedrun.yaml"
EMA = '{"class_path": "fmnist.training.weight_averaging.BatchNormEMA", "init_args": {"decay": 0.98, "warmup": true}}'


FOCUS = "fmnist.training.hard_examples.FocusOnHardExamples"


class Focus:
    """The recipe's ``trainer.callbacks`` with its ``FocusOnHardExamples`` set to ``init_args`` (added where the
    recipe has none; ``None``: removed), as one ``--trainer.callbacks`` list, so a variant never runs two."""

    def __init__(self, **init_args: float | bool | None) -> None:
        self.init_args = init_args

    def arguments(self, recipe: str) -> list[str]:
        config = yaml.safe_load((ROOT / recipe).read_text())
        callbacks = [c for c in (config.get("trainer") or {}).get("callbacks") or []
                     if not str(c.get("class_path", "")).endswith("FocusOnHardExamples")]
        if self.init_args.get("keep") is not None:
            callbacks.append({"class_path": FOCUS, "init_args": {"start_epoch": 1, **self.init_args}})
        return ["--trainer.callbacks", json.dumps(callbacks)]


VARIANTS: dict[str, tuple[str, list[str | Focus]]] = {
    "recipe": ("the recipe as shipped", []),
    "conv-stem": ("trained conv stem instead of the frozen patch whitening",
                  ["--model.model_kwargs", '{"stem": "conv"}']),
    "float32": ("float32 (the default where the CPU lacks AMX-BF16)", ["--trainer.precision", "32-true"]),
    "bf16": ("bf16 autocast (the default where the CPU has AMX-BF16)", ["--trainer.precision", "bf16-mixed"]),
    "no-flip-tta": ("no flip test-time augmentation", ["--model.flip_tta", "false"]),
    "no-augment": ("no random flips in training (and no flip TTA)",
                   ["--data.augment.enabled", "false", "--model.flip_tta", "false"]),
    "no-label-smoothing": ("label smoothing 0 instead of 0.1", ["--model.label_smoothing", "0"]),
    "adamw": ("AdamW (lr 3e-3) instead of Nesterov SGD", ["--model.optimizer", "adamw", "--model.lr", "0.003"]),
    "batch-512": ("batch 512 instead of 256", ["--data.batch_size", "512"]),
    "ema": ("+ EMA of the weights (decay 0.98)", ["--trainer.callbacks+", EMA]),
    "translate": ("+ random shifts of up to 2 pixels", ["--data.augment.translate", "0.07", "--data.augment.fill_mode", "constant"]),
    "muon": ("Muon for the convolution filters (Nesterov SGD for the rest)",
             ["--model.optimizer", "muon"]),
    "tta-shift": ("+ translated test-time views (1 pixel, x3 with flip TTA: x6)", ["--model.tta_shift", "1"]),
    "label-smoothing-0.2": ("label smoothing 0.2 instead of 0.1", ["--model.label_smoothing", "0.2"]),
    "no-hard": ("every epoch on every image (no FocusOnHardExamples)", [Focus(keep=None)]),
    "hard-third-balanced": ("every epoch after the first on the hardest third of each class",
                            [Focus(keep=1 / 3, balanced=True)]),
    "hard-half-balanced": ("every epoch after the first on the hardest half of each class",
                           [Focus(keep=0.5, balanced=True)]),
    "hard-half": ("every epoch after the first on the hardest half of the images (FocusOnHardExamples keep 0.5)",
                  [Focus(keep=0.5)]),
    "hard-half-4-epochs": ("4 epochs, epochs 2-4 on the hardest half", [Focus(keep=0.5),
                                                                      "--trainer.max_epochs", "4"]),
    "hard-half-muon": ("every epoch after the first on the hardest half, Muon for the filters",
                       [Focus(keep=0.5), "--model.optimizer", "muon"]),
    "hard-third": ("every epoch after the first on the hardest third", [Focus(keep=1 / 3)]),
    "hard-third-bn-refresh": ("every epoch after the first on the hardest third, BatchNorm statistics measured "
                              "again on 20 batches of all images after each",
                              [Focus(keep=1 / 3, bn_refresh_batches=20)]),
    "hard-third-4-epochs": ("4 epochs, epochs 2-4 on the hardest third",
                            [Focus(keep=1 / 3), "--trainer.max_epochs", "4"]),
    "hard-quarter-4-epochs": ("4 epochs, epochs 2-4 on the hardest quarter",
                              [Focus(keep=0.25), "--trainer.max_epochs", "4"]),
    "hard-half-2-epochs": ("2 epochs, the 2nd on the hardest half",
                           [Focus(keep=0.5), "--trainer.max_epochs", "2"]),
    "hard-half-14-epochs": ("14 epochs (speedrun-93: 10), epochs 2-14 on the hardest half",
                            [Focus(keep=0.5), "--trainer.max_epochs", "14"]),
    "hard-half-14-epochs-bn-refresh": ("14 epochs, epochs 2-14 on the hardest half, BatchNorm statistics measured "
                                       "again on 20 batches of all images after each",
                                       [Focus(keep=0.5, bn_refresh_batches=20), "--trainer.max_epochs", "14"]),
    "hard-half-35-epochs": ("35 epochs (speedrun-94: 25), epochs 2-35 on the hardest half",
                            [Focus(keep=0.5), "--trainer.max_epochs", "35"]),
    "2-epochs": ("2 epochs instead of 3", ["--trainer.max_epochs", "2"]),
    "4-epochs": ("4 epochs instead of 3", ["--trainer.max_epochs", "4"]),
}


def _arguments(variant: str, recipe: str) -> list[str]:
    """A variant's ``train.py fit`` settings for ``recipe``."""
    out: list[str] = []
    for item in VARIANTS[variant][1]:
        out += item.arguments(recipe) if isinstance(item, Focus) else [item]
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=2, help="seeds per variant (42, 43, ...)")
    parser.add_argument("--recipe", default=RECIPE, help="the config every variant starts from (default: %(default)s)")
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--logdir", default="lightning_logs/speedrun_ablation")
    parser.add_argument("--out", default=None, help="JSON record (default: docs/results/benchmarks/...; '-': none)")
    return parser.parse_args(argv)


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logdir = Path(args.logdir).resolve()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    started, load_start = time.time(), load_average()
    records: list[RunRecord] = []
    # Seeds outer, variants inner: a machine that slows down over the run slows every variant alike.
    for seed in range(42, 42 + args.seeds):
        for name in args.only:
            version = f"{stamp}-seed{seed}"
            record = RunRecord(name, args.recipe, seed, train_command(args.recipe, seed, logdir, name, version,
                                                                 _arguments(name, args.recipe)),
                               str(logdir / name / version))
            run_timed(record, dict(os.environ))
            status = (f"val {record.val_acc:.4f} test {record.test_acc:.4f}, process {record.process_seconds:.1f} s"
                      if record.error is None else f"FAILED: {record.error}")
            print(f"-- {name} seed {seed}: {status}; load {record.load_before[0]} -> {record.load_after[0]}",
                  flush=True)
            records.append(record)
    rows = []
    for name in args.only:
        done = [r for r in records if r.label == name and r.error is None]
        rows.append({"variant": name, "change": VARIANTS[name][0], "runs": len(done),
                     "val_acc": _mean([r.val_acc for r in done]), "test_acc": _mean([r.test_acc for r in done]),
                     "process_seconds": _mean([r.process_seconds for r in done]),
                     "loop_seconds": _mean([r.loop_seconds for r in done])})
    base = next((r for r in rows if r["variant"] == "recipe"), None)
    print("\n| variant | change | runs | val acc | test acc | wall s | loop s | val vs recipe | wall vs recipe |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        if row["val_acc"] is None:
            print(f"| {row['variant']} | {row['change']} | 0 | failed | | | | | |")
            continue
        d_val = "" if base is None or base["val_acc"] is None else f"{100 * (row['val_acc'] - base['val_acc']):+.2f}"
        ratio = "" if base is None or not base["process_seconds"] else \
            f"{row['process_seconds'] / base['process_seconds']:.2f}"
        print(f"| {row['variant']} | {row['change']} | {row['runs']} | {100 * row['val_acc']:.2f}% | "
              f"{100 * row['test_acc']:.2f}% | {row['process_seconds']:.1f} | {row['loop_seconds']:.1f} | "
              f"{d_val} | {ratio} |")
    print(f"load average: {load_start} at the start, {load_average()} at the end")
    if args.out != "-":
        out = Path(args.out) if args.out else ROOT / "docs" / "results" / "benchmarks" / \
            f"speedrun_ablation-{Path(args.recipe).stem}-{time.strftime('%Y-%m-%d')}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({
            "benchmark": "speedrun_ablation", "recipe": args.recipe, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "seconds": round(time.time() - started, 1), "machine": machine(), "load_average_start": load_start,
            "load_average_end": load_average(), "rows": rows, "runs": [asdict(r) for r in records]}, indent=2) + "\n")
        print(f"wrote {out}")
    return 1 if any(r.error for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
