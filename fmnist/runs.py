"""Run folders: where a training run lives and what it recorded, written down once.

Lightning's TensorBoard logger lays runs out as ``<logdir>/<name>/version_<k>/`` with
``checkpoints/``, ``hparams.yaml``, ``config.yaml`` and our ``metrics.json``. Every other module
asks this one for the newest run, a run's checkpoint, its metrics, and the provenance (git commit,
machine) that results files record.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

import torch

from fmnist.errors import FmnistError
from fmnist.files import write_json_atomic
from fmnist.serialization import read_json_capped

_VERSION = re.compile(r"version_(\d+)")
METRICS_FILE = "metrics.json"


def check_folder_name(key: str, value: Any) -> None:
    """A run name or version names one folder under the log root: never a path that leaves it (None: unset)."""
    if value is None:
        return
    text = str(value)
    if not text or text in (".", "..") or "/" in text or "\\" in text or os.sep in text or "\0" in text:
        raise FmnistError(f"{key} {text!r} must be one folder name (no '/', not '.' or '..'): runs live in "
                          f"<save_dir>/<name>/<version>; choose another --logdir to put them elsewhere.")


def version_number(folder: Path) -> int | None:
    """``version_3`` -> 3; any other folder name -> None."""
    match = _VERSION.fullmatch(folder.name)
    return int(match.group(1)) if match else None


def versions(name_dir: Path, need: str | None = None) -> list[Path]:
    """``version_<k>`` folders under ``name_dir`` (holding ``need`` if given), oldest first."""
    found = [(version_number(p), p) for p in name_dir.glob("version_*") if version_number(p) is not None
             and (need is None or (p / need).exists())]
    return [p for _, p in sorted(found)]


def latest_run(name_dir: Path, need: str | None = None) -> Path | None:
    """The highest ``version_<k>`` under ``name_dir`` (that contains ``need``, if given)."""
    found = versions(name_dir, need)
    return found[-1] if found else None


def newest_trained(path: Path) -> Path:
    """``lightning_logs/deep`` (a run name) -> its newest version with a checkpoint; anything else unchanged."""
    if not path.is_dir() or (path / "checkpoints").is_dir() or any(path.glob("*.ckpt")):
        return path
    trained = [p for p in versions(path) if any(p.rglob("*.ckpt"))]
    return trained[-1] if trained else path


def resolve_checkpoint(path: str | Path) -> Path:
    """A ``.ckpt`` file as given, or a run folder's best checkpoint (falling back to ``last.ckpt``)."""
    path = newest_trained(Path(path))
    if path.is_file():
        return path
    if not path.is_dir():
        raise FmnistError(f"{path} is neither a checkpoint file nor a run folder; pass e.g. "
                          f"lightning_logs/deep/version_0 or its checkpoints/best.ckpt.")
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    for name in ("best.ckpt", "last.ckpt"):
        if (folder / name).is_file():
            return folder / name
    others = sorted(folder.glob("*.ckpt"))
    if others:
        return others[-1]
    raise FmnistError(f"no checkpoint (*.ckpt) in {folder}; did the run finish an epoch?")


def run_dir_of(checkpoint: Path) -> Path | None:
    """``.../version_3/checkpoints/best.ckpt`` -> ``.../version_3``."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else None


def run_tag(model_name: str, checkpoint: Path, run_dir: Path | None) -> str:
    """``lightning_logs/deep/version_0`` -> ``deep_v0``; a bare checkpoint -> ``<model>_<file stem>``."""
    if run_dir is not None:
        number = version_number(run_dir)
        return f"{run_dir.parent.name}_v{number}" if number is not None else f"{run_dir.parent.name}_{run_dir.name}"
    return f"{model_name}_{checkpoint.stem}"


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON file's object, or None when it is missing or unreadable (a run still in progress).

    A file too large to be one fmnist wrote is refused (FmnistError) before it is read.
    """
    try:
        value = read_json_capped(path) if path.is_file() else None
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def read_metrics(run_dir: Path) -> dict[str, Any] | None:
    return read_json(run_dir / METRICS_FILE)


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> Path:
    """Write ``metrics.json`` atomically (a reader never sees half a file), as strict JSON (NaN -> null)."""
    return write_json_atomic(run_dir / METRICS_FILE, metrics)


def git(*args: str, cwd: Path | None = None) -> str | None:
    """Output of a git command in the package's checkout (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, check=True,
                             cwd=cwd or Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def git_commit() -> str | None:
    """The short commit of the code that made a result (recorded in every metrics.json and timing)."""
    return git("rev-parse", "--short", "HEAD")


def machine_description() -> str:
    """Cores, CPU model, GPU and versions: what every timing is measured on."""
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
