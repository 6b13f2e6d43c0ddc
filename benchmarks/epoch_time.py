"""Epoch time of study B's ``deep`` through our real stack, against the studies' Keras code.

Ours: Lightning ``Trainer`` + ``ImageDataModule`` (whole dataset in memory, batch work in
``on_after_batch_transfer``) + ``Classifier("deep")``, Adam 1e-3, batch 64, the same stratified
51,000 / 9,000 split, on the CPU. An epoch is timed by ``fmnist.training.callbacks.EpochTimer``: training
pass + validation pass, as Keras' ``fit`` reports it. The summary is the **median of epochs
2..N**: epoch 1 (warm-up: allocator, oneDNN primitive cache, ``torch.compile``'s compilation) is
excluded, in both implementations. CPU seconds of the process are recorded next to wall seconds:
on a shared machine they are the steadier number.

Keras: ``benchmarks/keras_deep.py`` run in a subprocess with ``--keras-python`` (TensorFlow lives
only in that interpreter's venv; see that script's docstring), skipped if the interpreter is
missing. With ``--repeat R`` ours and Keras run alternately R times (back to back, so both see
the same machine load); the ratio ours/Keras is reported per pair and as a median.

    python benchmarks/epoch_time.py --epochs 3                      # ours (no augmentation) + Keras
    python benchmarks/epoch_time.py --epochs 3 --augment both --no-keras
    python benchmarks/epoch_time.py --epochs 3 --threads torch --no-channels-last   # the pre-tuning defaults

Flags map onto the real options: ``--channels-last`` / ``--compile`` / ``--threads`` ->
``Classifier(channels_last=, compile=, cpu_threads=)``; ``--omp-wait-policy`` -> ``OMP_WAIT_POLICY``
(set before torch is imported; ``passive`` stops OpenMP threads busy-waiting, which on an
oversubscribed machine costs far more than it saves).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KERAS_SCRIPT = Path(__file__).resolve().parent / "keras_deep.py"
DEFAULT_KERAS_PYTHON = "/work/tfvenv/bin/python"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (median over epochs 2..N)")
    parser.add_argument("--model", default="deep")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--eval-batch-size", type=int, default=None, help="default: the data module's (4x batch)")
    parser.add_argument("--augment", choices=("off", "on", "both"), default="off",
                        help="our batch augmentation (Keras side: never, as in the studies' timed code)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                        help="Classifier(channels_last=...); default: the Classifier's own default")
    parser.add_argument("--compile", action="store_true", help="Classifier(compile=True) (torch.compile, inductor)")
    parser.add_argument("--precision", nargs="+", default=None,
                        help="Trainer(precision=...) of our runs, each timed in turn (e.g. 32-true bf16-mixed); "
                             "default: what training uses on this machine (bf16-mixed where the CPU has native "
                             "bf16, else 32-true)")
    parser.add_argument("--threads", default="torch",
                        help="Classifier(cpu_threads=...): 'torch' (the default: leave torch's own setting alone), "
                             "'auto' (per epoch, the faster of torch's count and 1) or an integer (fixed)")
    parser.add_argument("--omp-wait-policy", choices=("default", "passive", "active"), default="default",
                        help="OMP_WAIT_POLICY for this process (default: leave the environment alone)")
    parser.add_argument("--progress-bar", action="store_true", help="keep Lightning's progress bar (default off)")
    parser.add_argument("--limit-train-batches", type=float, default=None, help="quick runs only")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=1, help="alternate ours / Keras this many times")
    parser.add_argument("--keras-python", default=DEFAULT_KERAS_PYTHON)
    parser.add_argument("--keras-threads", type=int, default=0)
    parser.add_argument("--no-keras", action="store_true")
    parser.add_argument("--no-test", action="store_true", help="skip the test-set accuracy of our runs")
    parser.add_argument("--out", default=None, help="append one JSON line per run to this file")
    parser.add_argument("--ledger", default=str(ROOT / "results"),
                        help="results ledger the ratio is recorded in, one record per day and precision ('-': none)")
    return parser.parse_args(argv)


def steady_median(seconds: list[float]) -> float:
    """Median of epochs 2..N (epoch 1 is warm-up); the only epoch if there is one."""
    return statistics.median(seconds[1:] or seconds)


def run_ours(args: argparse.Namespace, augment: bool, precision: str) -> dict:
    import lightning as L
    import torch

    from fmnist.data.augment import AugmentSettings
    from fmnist.data.datamodule import ImageDataModule
    from fmnist.training.callbacks import EpochTimer
    from fmnist.training.module import Classifier

    class CpuEpochTimer(EpochTimer):
        """EpochTimer plus the process' CPU seconds over the same span."""

        def __init__(self) -> None:
            super().__init__()
            self.cpu_seconds: list[float] = []

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self._cpu = time.process_time()
            super().on_train_epoch_start(trainer, pl_module)

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            super().on_train_epoch_end(trainer, pl_module)
            self.cpu_seconds.append(time.process_time() - self._cpu)
            print(f"ours epoch {len(self.epoch_seconds)}: {self.epoch_seconds[-1]:.2f} s "
                  f"(cpu {self.cpu_seconds[-1]:.1f} s, load {os.getloadavg()[0]:.1f})", flush=True)

    L.seed_everything(args.seed, verbose=False)
    datamodule = ImageDataModule(batch_size=args.batch_size, eval_batch_size=args.eval_batch_size,
                                 augment=AugmentSettings(enabled=augment))
    model_options: dict = {"compile": args.compile}
    if "cpu_threads" in inspect.signature(Classifier).parameters:  # absent before the thread picker
        model_options["cpu_threads"] = {"auto": "auto", "torch": None}.get(args.threads, args.threads)
        if model_options["cpu_threads"] not in ("auto", None):
            model_options["cpu_threads"] = int(args.threads)
    elif args.threads not in ("auto", "torch"):
        torch.set_num_threads(int(args.threads))
    if args.channels_last is not None:
        model_options["channels_last"] = args.channels_last
    model = Classifier(args.model, **model_options)
    timer = CpuEpochTimer()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=args.epochs, logger=False,
                        enable_checkpointing=False, enable_progress_bar=args.progress_bar,
                        enable_model_summary=False, callbacks=[timer], deterministic=False, precision=precision,
                        limit_train_batches=args.limit_train_batches)
    load_before = os.getloadavg()
    trainer.fit(model, datamodule=datamodule)
    load_after = os.getloadavg()
    test_acc = None
    if not args.no_test:
        test_acc = float(trainer.test(model, datamodule=datamodule, verbose=False)[0]["test_acc"])
    val_acc = trainer.callback_metrics.get("val_acc")
    return {
        "impl": "ours", "model": args.model, "augment": augment, "epochs": args.epochs,
        "batch_size": args.batch_size, "eval_batch_size": datamodule.eval_batch_size, "precision": precision,
        "channels_last": getattr(model, "channels_last", model.hparams.channels_last), "compile": args.compile,
        "threads": args.threads, "threads_chosen": list(model.thread_picker.choices) if hasattr(model, "thread_picker") else [],
        "torch_threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "epoch_seconds": [round(s, 3) for s in timer.epoch_seconds],
        "epoch_cpu_seconds": [round(s, 3) for s in timer.cpu_seconds],
        "median_epoch_seconds": round(steady_median(timer.epoch_seconds), 3),
        "median_epoch_cpu_seconds": round(steady_median(timer.cpu_seconds), 3),
        "median_excludes_first_epoch": len(timer.epoch_seconds) > 1,
        "val_acc": float(val_acc) if val_acc is not None else None, "test_acc": test_acc,
        "torch": torch.__version__, "lightning": L.__version__,
        "loadavg_before": [round(v, 2) for v in load_before], "loadavg_after": [round(v, 2) for v in load_after],
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def run_keras(args: argparse.Namespace) -> dict | None:
    python = Path(args.keras_python)
    if args.no_keras:
        return None
    if not python.exists():
        print(f"Keras side skipped: {python} does not exist (see {KERAS_SCRIPT.name}'s docstring to install it).")
        return None
    cmd = [str(python), str(KERAS_SCRIPT), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
           "--seed", str(args.seed)]
    if args.keras_threads:
        cmd += ["--threads", str(args.keras_threads)]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "PYTHONPATH")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    for line in proc.stdout.splitlines():
        if line.startswith("keras "):
            print(line, flush=True)
    result = next((json.loads(line[len("RESULT "):]) for line in proc.stdout.splitlines()
                   if line.startswith("RESULT ")), None)
    if proc.returncode != 0 or result is None:
        print(f"Keras run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}", file=sys.stderr)
        return None
    return result


def ledger_record(args: argparse.Namespace, precision: str, pairs: list[dict], keras_versions: dict) -> Path:
    """The side-by-side pairs of one precision as a results-ledger record of today (README reads these)."""
    from fmnist.ledger import write_record
    from fmnist.reproduce.experiments import device_of
    from fmnist.reproduce.speed import keras_ratio_record

    device, device_name = device_of(0)
    return write_record(Path(args.ledger), keras_ratio_record(
        day=time.strftime("%Y-%m-%d"), model=args.model, batch_size=args.batch_size, precision=precision,
        epochs=args.epochs, pairs=pairs, device=device, device_name=device_name,
        command=" ".join(["python", *sys.argv]), keras_versions=keras_versions))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.omp_wait_policy != "default":
        if "torch" in sys.modules:
            print("warning: torch already imported; --omp-wait-policy has no effect", file=sys.stderr)
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    sys.path.insert(0, str(ROOT))
    from fmnist.training.precision import default_precision

    args.precision = args.precision or [default_precision(trains_on_cpu=True)]
    augments = {"off": [False], "on": [True], "both": [False, True]}[args.augment]
    results: list[dict] = []

    def record(result: dict | None) -> None:
        if result is None:
            return
        results.append(result)
        if args.out:
            with open(args.out, "a") as handle:
                handle.write(json.dumps(result) + "\n")

    ratios = []
    pairs: dict[tuple[str, bool], list[dict]] = {}
    keras_versions: dict = {}
    for _ in range(args.repeat):
        ours = [run_ours(args, augment, precision) for precision in args.precision for augment in augments]
        for result in ours:
            record(result)
        keras = run_keras(args)
        record(keras)
        if keras is not None:
            keras_versions = {k: keras.get(k) for k in ("tensorflow", "python", "threads")}
            ratios.append({(r["precision"], r["augment"]): r["median_epoch_seconds"] / keras["median_epoch_seconds"]
                           for r in ours})
            for r in ours:
                pairs.setdefault((r["precision"], r["augment"]), []).append(
                    {"ours": r["median_epoch_seconds"], "keras": keras["median_epoch_seconds"],
                     "ratio": r["median_epoch_seconds"] / keras["median_epoch_seconds"],
                     "ours_test_acc": r["test_acc"], "keras_test_acc": keras.get("test_acc"),
                     "loadavg": r["loadavg_before"]})
    if args.ledger != "-" and args.limit_train_batches is None:
        for (precision, augment), found in pairs.items():
            if not augment:  # the studies' timed code trains without augmentation
                print(f"recorded {ledger_record(args, precision, found, keras_versions)}")

    print(f"\nepoch seconds, median of epochs 2..{args.epochs} (epoch 1 = warm-up, excluded); "
          f"load average now {os.getloadavg()[0]:.1f}")
    for r in results:
        if r["impl"] == "ours":
            chosen = f" (chose {','.join(map(str, r['threads_chosen']))})" if r["threads_chosen"] else ""
            label = (f"ours  {r['precision']:10} augment={r['augment']!s:5} channels_last={r['channels_last']!s:5} "
                     f"compile={r['compile']!s:5} threads={r['threads']}{chosen} omp={r['omp_wait_policy']}")
            cpu = f"  cpu {r['median_epoch_cpu_seconds']:7.2f} s"
        else:
            label, cpu = f"keras TensorFlow {r['tensorflow']} threads={r['threads']}", ""
        print(f"  {label:80} {r['median_epoch_seconds']:7.2f} s{cpu}  test_acc {r['test_acc'] or float('nan'):.4f}")
    for key in (ratios[0] if ratios else {}):
        values = [pair[key] for pair in ratios]
        precision, augment = key
        print(f"ratio ours ({precision}, augment={augment}) / Keras: {', '.join(f'{x:.2f}' for x in values)}; "
              f"median {statistics.median(values):.2f}, range {min(values):.2f}-{max(values):.2f} (goal <= 0.35)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
