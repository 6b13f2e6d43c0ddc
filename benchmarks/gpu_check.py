"""One prepared check of the GPU path, as a user would type it; writes one JSON record.

Runs, each with its own time limit and all within about 5 minutes on one GPU:

1. the tests that only run on CUDA (everything else skips them),
2. ``train.py --model deep --gpus 1 --epochs 2`` in float32 and with ``--trainer.precision bf16-mixed``,
3. ``evaluate.py`` (report), ``evaluate.py gradcam`` and ``evaluate.py predict`` on the float32 run, on the GPU,
4. one ``python -m fmnist.reproduce --only deep --gpus 1 --budget quick`` piece,
5. the speedrun recipe, when the model registry has it.

Usage::

    python benchmarks/gpu_check.py [--out docs/results/gpu_check.json] [--wheels DIR] [--work DIR]

``--wheels DIR`` first installs fmnist without dependencies plus the wheels in ``DIR`` (for a GPU machine with
its own torch and no package index). ``--download-wheels DIR`` fetches those wheels beforehand, on a machine with
the package index (``GPU_MACHINE_LACKS``: what fmnist needs beyond that machine's torch, Lightning, torchmetrics,
scikit-learn, TensorBoard, rich, matplotlib and OpenCV). Without a CUDA GPU it says so and exits 3 before doing
anything, unless ``--cpu-rehearsal`` runs every step on the CPU (rehearse the whole script, install included,
before GPU minutes are spent on it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NO_GPU_EXIT = 3
# fmnist's dependencies (and the tests') that the GPU machine's own Python does not have, with theirs.
GPU_MACHINE_LACKS = (
    "captum", "jsonargparse[signatures]", "docstring-parser", "typeshed-client", "plotly", "narwhals", "skops",
    "prettytable", "wcwidth", "optuna", "optuna-integration", "alembic", "sqlalchemy", "mako", "colorlog",
    "greenlet", "pytest", "pluggy", "iniconfig",
)


def run_step(name: str, command: list[str], timeout: int, env: dict[str, str]) -> dict[str, Any]:
    """Run one command from the repository root; keep its exit code, time and the tail of its output."""
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        code, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        code, output = None, f"timed out after {timeout} s\n{(exc.stdout or '')}{(exc.stderr or '')}"
    seconds = round(time.perf_counter() - started, 1)
    ok = code == 0
    print(f"[{'ok' if ok else 'FAILED'}] {name}: {seconds} s", flush=True)
    if not ok:
        print(output[-3000:], file=sys.stderr)
    return {"name": name, "command": " ".join(command), "exit_code": code, "seconds": seconds, "ok": ok,
            "output_tail": output[-1500:]}


def run_metrics(logdir: Path, name: str) -> dict[str, Any] | None:
    """The newest ``metrics.json`` of a run name under ``logdir``."""
    found = sorted((logdir / name).glob("version_*/metrics.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        return None
    metrics = json.loads(found[-1].read_text())
    keep = ("test_acc", "val_acc", "epochs", "wall_seconds", "seconds_per_epoch", "accelerator", "devices")
    return {key: metrics.get(key) for key in keep} | {"run": str(found[-1].parent)}


def install(wheels: Path) -> None:
    """fmnist without dependencies (the machine's torch stays), then the wheels it lacks, offline."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-e", str(ROOT)], check=True)
    files = sorted(str(p) for p in wheels.glob("*.whl"))
    if files:
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(wheels),
                        "--no-deps", *files], check=True)


def pinned_like_the_project(name: str) -> str:
    """``name`` with the version range pyproject.toml gives it (plotly>=5.15,<7), so the carried wheel fits fmnist."""
    text = (ROOT / "pyproject.toml").read_text()
    match = re.search(rf'^\s*"({re.escape(name)}(?:\[[^\]]*\])?(?:[<>=!~][^"]*)?)",?\s*$', text, flags=re.MULTILINE | re.IGNORECASE)
    return match.group(1) if match else name


def download(wheels: Path) -> None:
    """The wheels ``install`` needs, fetched here (where the package index is) to carry to the GPU machine."""
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--dest",
                    str(wheels), *(pinned_like_the_project(name) for name in GPU_MACHINE_LACKS)], check=True)
    print(f"{len(list(wheels.glob('*.whl')))} wheels in {wheels}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "gpu_check.json")
    parser.add_argument("--wheels", type=Path, help="install fmnist (--no-deps) and these wheels first")
    parser.add_argument("--download-wheels", type=Path, metavar="DIR",
                        help="only fetch the wheels the GPU machine lacks into DIR, then exit")
    parser.add_argument("--work", type=Path, help="folder for runs and reports (default: a temporary one)")
    parser.add_argument("--cpu-rehearsal", action="store_true",
                        help="run every step on the CPU instead (to rehearse the script before GPU time is spent)")
    args = parser.parse_args()

    if args.download_wheels:
        download(args.download_wheels)
        return 0
    if args.wheels:
        install(args.wheels)
    import torch  # after the optional install: the machine's own torch

    if not torch.cuda.is_available() and not args.cpu_rehearsal:
        print(f"no GPU: torch {torch.__version__} sees no CUDA device on this machine, so there is nothing to "
              f"check; run this on a machine with an NVIDIA GPU.", file=sys.stderr)
        return NO_GPU_EXIT

    work = args.work or Path(tempfile.mkdtemp(prefix="fmnist-gpu-check-"))
    logs, reports = work / "lightning_logs", work / "reports"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "FMNIST_NO_DOWNLOAD": "1"}
    shared = ROOT.parent / "shared" / "data"
    if shared.is_dir() and "FMNIST_DATA_DIR" not in env:
        env["FMNIST_DATA_DIR"] = str(shared)
    py = sys.executable
    gpus, device = ("0", "cpu") if args.cpu_rehearsal else ("1", "cuda")

    def limit(gpu_seconds: int) -> int:
        """Each step's time limit, sized for one GPU; a CPU rehearsal gets six times as long."""
        return gpu_seconds * 6 if args.cpu_rehearsal else gpu_seconds

    quiet = ["--trainer.enable_progress_bar", "false"]
    steps = [
        run_step("cuda tests", [py, "-m", "pytest", "-q", "-rs", "tests", "-k", "cuda or gpu"], limit(150), env),
        run_step("train deep float32", [py, "train.py", "--model", "deep", "--gpus", gpus, "--epochs", "2",
                                        "--logdir", str(logs), "--trainer.precision", "32-true", *quiet],
                 limit(150), env),
        run_step("train deep bf16-mixed", [py, "train.py", "--model", "deep", "--gpus", gpus, "--epochs", "2",
                                           "--logdir", str(logs), "--trainer.logger.init_args.name", "deep-bf16",
                                           "--trainer.precision", "bf16-mixed", *quiet], limit(150), env),
    ]
    float32 = run_metrics(logs, "deep")
    if float32:
        run = float32["run"]
        steps.append(run_step("evaluate on cuda", [py, "evaluate.py", run, "--device", device, "--out",
                                                   str(reports / "deep")], limit(90), env))
        steps.append(run_step("gradcam on cuda", [py, "evaluate.py", "gradcam", run, "--device", device], limit(90), env))
        photos = shared / "wild"
        if photos.is_dir():
            steps.append(run_step("predict on cuda", [py, "evaluate.py", "predict", run, str(photos), "--device",
                                                      device, "--max-images", "40", "--out",
                                                      str(reports / "photos")], limit(90), env))
    steps.append(run_step("reproduce --only deep --gpus 1", [py, "-m", "fmnist.reproduce", "--only", "deep",
                                                             "--gpus", gpus, "--budget", "quick", "--seeds", "42",
                                                             "--root", str(work / "reproduce"), "--no-report"],
                          limit(150), env))
    listing = subprocess.run([py, "train.py", "--list-models"], cwd=ROOT, env=env, capture_output=True, text=True)
    if re.search(r"^speedrun\b", listing.stdout, flags=re.MULTILINE):
        steps.append(run_step("speedrun", [py, "train.py", "--model", "speedrun", "--gpus", gpus, "--logdir",
                                           str(logs), *quiet], limit(120), env))

    record = {
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "gpu": "none (CPU rehearsal)" if args.cpu_rehearsal else torch.cuda.get_device_name(0),
        "torch": torch.__version__, "python": platform.python_version(),
        "all_ok": all(step["ok"] for step in steps),
        "runs": {name: run_metrics(logs, name) for name in ("deep", "deep-bf16", "speedrun")},
        "steps": steps,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}: {'all steps passed' if record['all_ok'] else 'some steps FAILED'}")
    return 0 if record["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
