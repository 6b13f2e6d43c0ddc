"""``python evaluate.py compare RUN_OR_REPORT ...``: one table and one chart across CNNs and baselines.

Accepts training run folders (their ``metrics.json`` from ``train.py``), report folders written
by ``evaluate.py`` (deep or baseline), K-fold folders (``cv_results.json``), and parent folders
holding any of these (``lightning_logs/deep`` -> its latest finished version; ``reports`` -> every
report in it). Writes ``comparison.md``, ``comparison.csv``, ``comparison.png`` (study A's
"Results at a glance") and ``comparison.html`` (the same chart, interactive, works offline).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fmnist.errors import FmnistError
from fmnist.figures import evaluation as plots
from fmnist.files import write_dict_csv_atomic, write_text_atomic
from fmnist.outputs import refuse_run_folder
from fmnist.serialization import read_json_capped
from fmnist.studies import BENCHMARK, PUBLISHED, PUBLISHED_MNIST_CROSS
from fmnist.terminal import console

DEFAULT_OUT = Path("reports") / "compare"

COLUMNS = ("name", "kind", "model", "dataset", "split", "accuracy", "macro_f1", "params", "train_seconds",
           "published", "benchmark", "source")


def _read(path: Path) -> dict[str, Any]:
    """A metrics.json / cv_results.json: an object, refused from its size before it is read when too large."""
    try:
        value = read_json_capped(path)
    except (OSError, ValueError) as exc:
        raise FmnistError(f"{path} is not readable JSON ({exc}); rerun the step that wrote it.") from None
    if not isinstance(value, dict):
        raise FmnistError(f"{path} holds {type(value).__name__}, not a JSON object of results; rerun the step that "
                          f"wrote it.")
    return value


def _published(model: str, dataset: str, split: str, trained_on: str | None) -> float | None:
    if split != "test":
        return None
    if dataset == "mnist" and (trained_on or "fashion") == "fashion":
        return PUBLISHED_MNIST_CROSS.get(model)
    return PUBLISHED.get(model) if dataset == "fashion" else None


def row_from_report(metrics: dict[str, Any], source: Path) -> dict[str, Any]:
    """A report folder's metrics.json (written by :func:`fmnist.evaluation.write_report`)."""
    model, dataset, split = metrics.get("model", "?"), metrics.get("dataset", "fashion"), metrics.get("split", "test")
    kind = metrics.get("kind") or ("baseline" if model in BENCHMARK else "cnn")
    return {"name": metrics.get("name") or source.name, "kind": kind, "model": model, "dataset": dataset,
            "split": split, "accuracy": metrics.get("accuracy"),
            "macro_f1": (metrics.get("macro") or {}).get("f1", metrics.get("macro_f1")),
            "params": metrics.get("trainable_params"), "train_seconds": metrics.get("train_seconds"),
            "published": _published(model, dataset, split, metrics.get("trained_on")),
            "benchmark": BENCHMARK.get(model) if kind == "baseline" and (dataset, split) == ("fashion", "test")
            else None, "source": str(source)}


def row_from_run(metrics: dict[str, Any], source: Path) -> dict[str, Any]:
    """A training run folder's metrics.json (written by ``train.py`` after testing the best checkpoint)."""
    model, dataset = metrics.get("model", "?"), metrics.get("dataset") or "fashion"
    match = re.fullmatch(r"version_(\d+)", source.name)
    name = f"{source.parent.name}_v{match.group(1)}" if match else source.name
    return {"name": name, "kind": "cnn", "model": model, "dataset": dataset, "split": "test",
            "accuracy": metrics.get("test_acc"), "macro_f1": metrics.get("test_macro_f1"),
            "params": metrics.get("trainable_params"), "train_seconds": metrics.get("wall_seconds"),
            "published": _published(model, dataset, "test", dataset), "benchmark": None, "source": str(source)}


def row_from_cv(summary: dict[str, Any], source: Path) -> dict[str, Any]:
    """A K-fold folder's cv_results.json: the mean over finished folds."""
    agg, model = summary.get("aggregate") or {}, summary.get("model", "?")
    seconds = [f.get("seconds") for f in summary.get("folds", []) if f.get("seconds") is not None]
    return {"name": source.name, "kind": "cnn", "model": model, "dataset": "fashion", "split": "test",
            "accuracy": (agg.get("test_acc") or {}).get("mean"),
            "macro_f1": (agg.get("test_macro_f1") or {}).get("mean"), "params": None,
            "train_seconds": sum(seconds) if seconds else None, "published": PUBLISHED.get(model),
            "benchmark": None, "source": str(source)}


# The numbers a row is made of, with their range; and what each is called in the file it came from.
NUMERIC_FIELDS = {"accuracy": (0.0, 1.0), "macro_f1": (0.0, 1.0), "params": (0, None), "train_seconds": (0, None)}
RUN_FIELD_NAMES = {"accuracy": "test_acc", "macro_f1": "test_macro_f1", "params": "trainable_params",
                   "train_seconds": "wall_seconds"}


def _checked(row: dict[str, Any], source: Path, names: dict[str, str] | None = None) -> dict[str, Any]:
    """A row whose numbers are numbers: a hand-edited or foreign metrics file is named, not half-tabulated."""
    for key, (low, high) in NUMERIC_FIELDS.items():
        value = row.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value \
                or value < low or (high is not None and value > high):
            span = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise FmnistError(f"{source}: {(names or {}).get(key, key)} is {value!r}, not a number {span}; the "
                              f"file was edited or not written by fmnist; fix or remove it.")
    return row


def _row(folder: Path) -> dict[str, Any] | None:
    if (folder / "metrics.json").is_file():
        metrics = _read(folder / "metrics.json")
        if metrics.get("status") not in (None, "finished"):
            raise FmnistError(f"{folder} holds no result: the run ended {metrics['status']!r} "
                              f"({str(metrics.get('message') or 'see its metrics.json').rstrip('.')}); leave it out.")
        if "accuracy" in metrics and "confusion_matrix" in metrics:
            return _checked(row_from_report(metrics, folder), folder / "metrics.json")
        if "test_acc" in metrics:
            return _checked(row_from_run(metrics, folder), folder / "metrics.json", RUN_FIELD_NAMES)
        raise FmnistError(f"{folder / 'metrics.json'} holds neither a report (accuracy) nor a training run's "
                          f"results (test_acc); pass a report or run folder.")
    if (folder / "cv_results.json").is_file():
        return _checked(row_from_cv(_read(folder / "cv_results.json"), folder), folder / "cv_results.json")
    return None


def _finished(run: Path) -> bool:
    """A run folder with results (one that diverged or a sweep trial that was pruned has none)."""
    return (run / "metrics.json").is_file() and _read(run / "metrics.json").get("status") in (None, "finished")


def _version_key(path: Path) -> int:
    match = re.fullmatch(r"version_(\d+)", path.name)
    return int(match.group(1)) if match else -1


def collect(paths: list[str]) -> list[dict[str, Any]]:
    """One row per run/report, expanding parent folders; unknown paths are a clear error."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_file() and path.name in ("metrics.json", "cv_results.json"):
            path = path.parent
        if not path.exists():
            raise FmnistError(f"{raw} does not exist; pass run folders (lightning_logs/deep/version_0) or report "
                              f"folders (reports/svm).")
        if not path.is_dir():
            raise FmnistError(f"{raw} is a file; pass a run or report folder (or its metrics.json).")
        found: list[dict[str, Any]] = []
        row = _row(path)
        if row is not None:
            found = [row]
        else:
            versions = sorted((p for p in path.glob("version_*") if _finished(p)), key=_version_key)
            children = [versions[-1]] if versions else sorted(p for p in path.iterdir() if p.is_dir())
            found = [r for r in (_row(child) for child in children) if r is not None]
        if not found:
            raise FmnistError(f"{raw} holds no metrics.json (or cv_results.json), directly or one level down; "
                              f"train with train.py or write a report with evaluate.py first.")
        for r in found:
            if r["source"] not in seen:
                seen.add(r["source"])
                rows.append(r)
    return rows


def _cell(value: Any, column: str) -> str:
    if value is None:
        return ""
    if column in ("accuracy", "macro_f1", "published", "benchmark"):
        return f"{value:.4f}"
    if column == "params":
        return f"{int(value):,}"
    if column == "train_seconds":
        return f"{value:.1f}"
    return str(value)


def to_markdown(rows: list[dict[str, Any]]) -> str:
    shown = [c for c in COLUMNS if c != "source"]
    lines = ["| " + " | ".join(shown) + " |", "|" + "|".join("---" if c in ("name", "kind", "model", "dataset",
                                                                            "split") else "---:" for c in shown) + "|"]
    lines += ["| " + " | ".join(_cell(r.get(c), c) for c in shown) + " |" for r in rows]
    notes = [
        "",
        "accuracy / macro_f1: on the dataset's split shown; published: the same model in the source studies "
        "(study A/B; MNIST rows: study B's cross-dataset test); benchmark: Fashion-MNIST benchmark "
        "(arXiv:1708.07747, best setting).",
        "params: trainable parameters for CNNs; for baselines the numbers the fitted model stores (svm: support "
        "vectors x 784 + dual coefficients; rf: tree nodes; knn: stored training pixels). train_seconds: "
        "the training run's wall time (CNN) or the estimator's fit time (baseline).",
    ]
    return "\n".join(lines + notes) + "\n"


def write_outputs(rows: list[dict[str, Any]], out: Path, title: str = "Results at a glance") -> list[Path]:
    refuse_run_folder(out, "the comparison")

    write_text_atomic(out / "comparison.md", f"# {title}\n\n" + to_markdown(rows))
    write_dict_csv_atomic(out / "comparison.csv", COLUMNS, ({c: r.get(c) for c in COLUMNS} for r in rows))
    plots.comparison_bar(rows, out / "comparison.png", title=title)
    plots.comparison_html(rows, out / "comparison.html", title=title)
    return [out / n for n in ("comparison.md", "comparison.csv", "comparison.png", "comparison.html")]


def print_table(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title="comparison")
    shown = ("name", "kind", "dataset", "accuracy", "macro_f1", "params", "train_seconds", "published", "benchmark")
    for column in shown:
        table.add_column(column, justify="left" if column in ("name", "kind", "dataset") else "right")
    for r in rows:
        table.add_row(*(_cell(r.get(c), c) for c in shown))

    console().print(table)
