"""Output folders: a command writes only into a new folder, or one it made before -- never over a run or another report.

``evaluate.py RUN --out RUN`` used to replace the training run's ``metrics.json`` (its test accuracy, wall
time, fingerprints and resume count) with a report's. Every command that takes an output folder claims it
first, before it computes anything: a training run, K-fold or sweep folder is refused, and so is a report
folder another command (or the same command for another report name) wrote. A claimed folder gets a small
``.fmnist-output.json`` that says which command and report name it holds, so running the same command
again refreshes its own report. Report folders written before these markers are recognised by their files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fmnist.errors import FmnistError
from fmnist.files import write_json_atomic
from fmnist.serialization import read_json_capped

MARKER = ".fmnist-output.json"
# Files that make a folder a training run, a K-fold or a sweep: what no report may be written over.
RUN_MARKS = ("checkpoints", "hparams.yaml", "cv_config.json", "study.db", "best.yaml")
# The file each command's report is recognised by when its folder has no marker (written before markers); the
# most specific first: an ensemble's folder also holds a report, a robustness and an OOD summary, a photo folder a
# metrics.json.
SIGNATURES = {"ensemble": "ensemble.json", "predict": "predictions.csv", "compare": "comparison.md",
              "robustness": "robustness.json", "ood": "ood.json", "calibrate": "calibration.json",
              "explain-check": "explain_check.json", "evaluate": "metrics.json"}
COMMANDS = {"evaluate": "evaluate.py RUN", "robustness": "evaluate.py RUN --dataset fashion-c"}  # others: evaluate.py X


def run_folder_problem(folder: Path) -> str | None:
    """Why ``folder`` is a training run (or holds runs), or None."""
    for mark in RUN_MARKS:
        if (folder / mark).exists():
            return f"it holds {mark}"
    if any(folder.glob("version_*/checkpoints")) or any(folder.glob("fold_*/checkpoints")):
        return "it holds training runs"
    if (folder / "metrics.json").is_file():
        metrics = _json(folder / "metrics.json")
        if "best_checkpoint" in metrics or "status" in metrics and "confusion_matrix" not in metrics:
            return "its metrics.json is a training run's"
    return None


def refuse_run_folder(folder: str | Path, what: str = "the report") -> None:
    """Refuse to write ``what`` into a training run, K-fold or sweep folder (the API writers call this too)."""
    folder = Path(folder)
    if folder.is_dir():
        problem = run_folder_problem(folder)
        if problem:
            raise FmnistError(f"{folder} is a training run folder ({problem}); writing {what} there would replace "
                              f"the run's own files: pass another --out, e.g. reports/{folder.name}.")


def _json(path: Path) -> dict[str, Any]:
    try:
        value = read_json_capped(path)
    except (OSError, ValueError, FmnistError):
        return {}
    return value if isinstance(value, dict) else {}


def _holder(folder: Path) -> tuple[str | None, str | None]:
    """(command, report name) of what ``folder`` holds: from its marker, else from the files it has."""
    marker = folder / MARKER
    if marker.is_file():
        recorded = _json(marker)
        return recorded.get("command") or "another command", recorded.get("name")
    for command, signature in SIGNATURES.items():
        if (folder / signature).is_file():
            name = _json(folder / signature).get("name") if signature.endswith(".json") else None
            return command, name if isinstance(name, str) else None
    return None, None


def check_output(folder: str | Path, command: str, name: str | None = None) -> Path:
    """Make sure ``command`` may write report ``name`` (None: not known yet) into ``folder``; writes nothing.

    Refused: a training run / K-fold / sweep folder; a folder holding another command's report, or this
    command's report of another name (a different run or split), which it did not create.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FmnistError(f"--out {folder} is a file, not a folder; pass a folder for the report.")
    refuse_run_folder(folder)
    if folder.is_dir():
        holder, held_name = _holder(folder)
        if holder is not None and holder != command:
            shown = COMMANDS.get(holder, f"evaluate.py {holder}")
            raise FmnistError(f"{folder} holds a report of `{shown}`, which this command did not write; pass "
                              f"another --out (or delete that folder first).")
        if holder == command and name is not None and held_name is not None and held_name != name:
            raise FmnistError(f"{folder} holds the report {held_name!r}, not {name!r}; pass another --out (or "
                              f"--name {held_name} to refresh that report).")
    return folder


def mark_output(folder: str | Path, command: str, name: str | None = None) -> Path:
    """Record that ``command`` wrote report ``name`` into ``folder`` (after :func:`check_output` allowed it)."""
    return write_json_atomic(Path(folder) / MARKER, {"command": command, "name": name})
