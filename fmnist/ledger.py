"""The results ledger: one small JSON record per finished piece of work, committed under ``results/``.

Why: numbers that live only in a run folder die with the machine. Every piece of work that produces a published
number (a training run per seed, a CV run, a baseline, the cross-dataset test, a robustness ensemble, an
explanation check, a photo evaluation, a speed benchmark) writes one record here the moment it finishes, and
every page (RESULTS.md, the HTML page, README's table) is generated from the records alone.

A record is ``results/<budget>/<experiment>/<item>.<device>.json``: diff-friendly (sorted keys, floats to six
significant digits), written atomically, one file per piece, so several processes or machines can add records
to one ledger at once and merge them with git. Each holds the recipe it ran (a canonical dictionary and its
fingerprint, so a page can tell a record of today's recipe from a stale one), its metrics, and its provenance
(commit and whether the code was modified, versions, machine, device, data files' sha256, checkpoint sha256).
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import time
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from fmnist.errors import FmnistError
from fmnist.files import finite, write_json_atomic
from fmnist.runs import git, git_commit, machine_description

LEDGER_DIRNAME = "results"
SCHEMA = 1
REQUIRED = ("schema", "kind", "budget", "experiment", "item", "device", "recipe", "recipe_fingerprint", "metrics",
            "provenance")
_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
# The code that makes results: a change here (uncommitted) makes a record "dirty"; records and pages do not.
CODE_PATHS = ("fmnist", "configs", "train.py", "evaluate.py", "benchmarks", "pyproject.toml")
VERSIONED = ("torch", "torchvision", "lightning", "numpy", "scikit-learn")
SIGNIFICANT_DIGITS = 6


def default_ledger(repo: Path | None = None) -> Path:
    """``<repo>/results`` (repo: the working directory, where README and RESULTS.md are)."""
    return (repo or Path.cwd()) / LEDGER_DIRNAME


def _component(value: str, what: str) -> str:
    if not _COMPONENT.fullmatch(value) or value in (".", ".."):
        raise FmnistError(f"ledger {what} {value!r} must be one plain name (letters, digits, . _ + -).")
    return value


def record_path(ledger: Path, budget: str, experiment: str, item: str, device: str) -> Path:
    """Where the record of one piece lives."""
    return (Path(ledger) / _component(budget, "budget") / _component(experiment, "experiment")
            / f"{_component(item, 'item')}.{_component(device, 'device')}.json")


def fingerprint(recipe: Mapping[str, Any]) -> str:
    """A short, stable hash of a canonical recipe dictionary (key order and float spelling do not matter)."""
    text = json.dumps(finite(recipe), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def rounded(value: Any, digits: int = SIGNIFICANT_DIGITS) -> Any:
    """Floats to ``digits`` significant digits (0.8553000092506409 -> 0.8553): records diff cleanly."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {key: rounded(item, digits) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(item, digits) for item in value]
    return value


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def code_is_dirty() -> bool | None:
    """Whether the package's checkout has uncommitted changes to code or configs (None outside a git checkout)."""
    top = git("rev-parse", "--show-toplevel")
    if top is None:
        return None
    status = git("status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS, cwd=Path(top))
    return bool(status)


def versions() -> dict[str, str]:
    """Python and the libraries that shape a number (read from package metadata: nothing is imported)."""
    found = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def provenance(*, device_name: str, commit: str | None = None, **extra: Any) -> dict[str, Any]:
    """What a reviewer needs to trust a record: code, versions, machine, device, when."""
    return {"git_commit": commit or git_commit(), "git_dirty": code_is_dirty(), "versions": versions(),
            "machine": machine_description(), "device_name": device_name,
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}


def make_record(*, kind: str, budget: str, experiment: str, item: str, device: str, recipe: Mapping[str, Any],
                metrics: Mapping[str, Any], provenance: Mapping[str, Any], **sections: Any) -> dict[str, Any]:
    """A record dictionary (see the module's docstring); ``sections`` add e.g. ``curves`` or ``report``."""
    return {"schema": SCHEMA, "kind": kind, "budget": budget, "experiment": experiment, "item": item,
            "device": device, "recipe": dict(recipe), "recipe_fingerprint": fingerprint(recipe),
            "metrics": dict(metrics), "provenance": dict(provenance), **sections}


def write_record(ledger: Path, record: Mapping[str, Any]) -> Path:
    """Write one record atomically (replacing the piece's earlier record); returns its path."""
    missing = [key for key in REQUIRED if key not in record]
    if missing:
        raise ValueError(f"a ledger record needs {', '.join(missing)}")
    if record["recipe_fingerprint"] != fingerprint(record["recipe"]):
        raise ValueError("a ledger record's fingerprint must be the fingerprint of its recipe")
    path = record_path(ledger, record["budget"], record["experiment"], record["item"], record["device"])
    body = {key: (value if key == "recipe" else rounded(value)) for key, value in record.items()}
    return write_json_atomic(path, body, sort_keys=True, indent=1)


def read_record(path: Path) -> dict[str, Any]:
    """One record; a damaged file is one sentence naming it and how to mend it."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FmnistError(f"ledger record {path} is unreadable ({exc}); restore it with `git checkout -- {path}` or "
                          f"delete it and rerun its piece.") from None
    missing = [key for key in REQUIRED if key not in record] if isinstance(record, dict) else list(REQUIRED)
    if missing:
        raise FmnistError(f"ledger record {path} lacks {', '.join(missing)}; restore it with `git checkout -- "
                          f"{path}` or delete it and rerun its piece.")
    if record["schema"] != SCHEMA:
        raise FmnistError(f"ledger record {path} has schema {record['schema']}, this code reads {SCHEMA}; "
                          f"update fmnist or rerun the piece.")
    return record


def read_records(ledger: Path, budget: str | None = None) -> list[dict[str, Any]]:
    """Every record of ``budget`` (or of all budgets), in a stable order."""
    base = Path(ledger) / budget if budget else Path(ledger)
    pattern = "*/*.json" if budget else "*/*/*.json"
    return [read_record(path) for path in sorted(base.glob(pattern)) if not path.name.startswith(".")]


def find_record(ledger: Path, budget: str, experiment: str, item: str, device: str) -> dict[str, Any] | None:
    path = record_path(ledger, budget, experiment, item, device)
    return read_record(path) if path.is_file() else None


def current(record: Mapping[str, Any] | None, recipe_fingerprint: str) -> bool:
    """Whether ``record`` exists and was made with the recipe whose fingerprint is given."""
    return record is not None and record.get("recipe_fingerprint") == recipe_fingerprint


def by_key(records: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str, str], Mapping[str, Any]]:
    """``(experiment, item, device) -> record`` for lookups."""
    return {(r["experiment"], r["item"], r["device"]): r for r in records}
