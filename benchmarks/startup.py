"""Start-up time of the ``fmnist`` command: help, the model list, every verb's help, and start to first step.

Each command runs in a fresh process ``--repeat`` times (default 5); the table shows the median, min and max
wall seconds from ``Popen`` to exit, against the targets of issue 31 (help and ``models`` <= 0.5 s,
``train --help`` <= 3 s, start to the first training step of the speedrun <= 3 s).

The first step is timed by a callback added on the command line (``--trainer.callbacks+=startup_probe.FirstStep``,
this folder on ``PYTHONPATH``): at the first ``on_train_batch_start`` it prints the wall clock and ends the process,
so nothing is trained or written beyond the run folder's start (under a temporary ``--logdir``).

``fmnist`` is run as ``python -m fmnist.commands`` (what the console script calls; the installed script adds
only its own few lines). The first step is timed twice: cold (every import paid), and handed to a warm server
started for the purpose (``fmnist warm start``, :mod:`fmnist.commands.warm`). ``--importtime`` also prints the slowest imports of the train verb (``python -X
importtime``). Prints a markdown table to paste into docs/speed.md:

    OMP_NUM_THREADS=1 python benchmarks/startup.py [--repeat 5] [--importtime]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from time_to_accuracy import warm_server  # noqa: E402 -- benchmarks/ is on sys.path when run as a script

from fmnist.commands import VERBS  # noqa: E402 -- the table of verbs, light

FMNIST = [sys.executable, "-m", "fmnist.commands"]
HELP_TARGET, TRAIN_HELP_TARGET, FIRST_STEP_TARGET = 0.5, 3.0, 3.0
MARK = "FMNIST_FIRST_STEP "


def _env() -> dict[str, str]:
    """Cold: ``FMNIST_WARM=0``, never a server the user may have running (``warm_server`` turns it warm)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    env["FMNIST_WARM"] = "0"
    return env


def time_command(args: list[str], repeat: int) -> list[float]:
    """Wall seconds of ``args`` run ``repeat`` times, each in a fresh process (it must exit 0)."""
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run(args, capture_output=True, text=True, cwd=REPO, env=_env(), timeout=600)
        seconds.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(args)} exited {done.returncode}: {done.stderr[-500:]}")
    return seconds


def time_first_step(repeat: int, data_dir: str | None, env: dict[str, str] | None = None) -> list[float]:
    """Seconds from process start to the first training step of ``fmnist train --model speedrun``.

    With an ``env`` from :func:`warm_server`, the command is handed to that warm server (``fmnist warm start``).
    """
    env = env or _env()
    warm = "FMNIST_WARM_SOCKET" in env and env.get("FMNIST_WARM") != "0"
    seconds = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as logdir:
            args = [*FMNIST, "train", "--model", "speedrun", "--logdir", logdir,
                    "--trainer.callbacks+=startup_probe.FirstStep"]
            if data_dir:
                args += ["--data.data_dir", data_dir]
            started = time.time()
            done = subprocess.run(args, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
            if warm and "warm server" in done.stderr:  # it said it did not serve: not warm
                raise SystemExit(f"the warm server did not serve the command: {done.stderr[-500:]}")
            stamp = next((line for line in done.stdout.splitlines() if line.startswith(MARK)), None)
            if stamp is None:
                raise SystemExit(f"no first step (exit {done.returncode}): {done.stderr[-800:]}")
            seconds.append(float(stamp.removeprefix(MARK)) - started)
    return seconds


def import_times(module: str, top: int = 12) -> list[tuple[float, str]]:
    """The ``top`` slowest imports (cumulative seconds) of ``module`` in a fresh process."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True,
                          text=True, cwd=REPO, env=_env(), timeout=600)
    rows = []
    for line in done.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            name = parts[2].rstrip()
            if len(name) - len(name.lstrip()) <= 3:  # top-level imports only (nested ones are inside these)
                rows.append((int(parts[1]) / 1e6, name.strip()))
    return sorted(rows, reverse=True)[:top]


def row(label: str, seconds: list[float], target: float) -> str:
    median = statistics.median(seconds)
    verdict = "yes" if median <= target else "**no**"
    return f"| `{label}` | {median:.2f} | {min(seconds):.2f} | {max(seconds):.2f} | <= {target:g} | {verdict} |"


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
    return done.stdout.strip() or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="fresh processes per command (default 5)")
    parser.add_argument("--data-dir", default=None, help="dataset root for the speedrun (default: the usual search order)")
    parser.add_argument("--no-train", action="store_true", help="skip the start-to-first-step measurement")
    parser.add_argument("--importtime", action="store_true", help="also list the train verb's slowest imports")
    args = parser.parse_args()
    lines = [f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} at commit {commit()} on "
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
             f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; median of {args.repeat} fresh processes.",
             "", "| command | median s | min s | max s | target s | meets |", "|---|---:|---:|---:|---:|---|"]
    lines.append(row("fmnist --help", time_command([*FMNIST, "--help"], args.repeat), HELP_TARGET))
    lines.append(row("fmnist models", time_command([*FMNIST, "models"], args.repeat), HELP_TARGET))
    for verb in VERBS:
        target = TRAIN_HELP_TARGET if verb.name == "train" else HELP_TARGET
        lines.append(row(f"fmnist {verb.name} --help", time_command([*FMNIST, verb.name, "--help"], args.repeat),
                         target))
    if not args.no_train:
        lines.append(row("fmnist train --model speedrun: start to first step", time_first_step(args.repeat,
                                                                                               args.data_dir),
                         FIRST_STEP_TARGET))
        env = _env()
        with warm_server(env) as ready:
            lines.append(row("fmnist train --model speedrun: start to first step, warm server",
                             time_first_step(args.repeat, args.data_dir, env), FIRST_STEP_TARGET))
        lines += ["", f"`fmnist warm start` (once, before the warm rows): ready in {ready:.1f} s."]
    print("\n".join(lines))
    if args.importtime:
        print("\nSlowest imports of the train verb (`python -X importtime -c 'import fmnist.commands.train'`, "
              "cumulative s):\n\n| module | s |\n|---|---:|")
        for seconds, name in import_times("fmnist.commands.train"):
            print(f"| `{name}` | {seconds:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
