"""Accuracy under corruption: per corruption, by severity, the mean, and mCE against a reference model.

The corrupted test set (``fashion-c``, :mod:`fmnist.data.corrupted_sets`) is generated once under the
data root and reused; each corruption is a split of the 10,000 test images with a random severity
(1-5) per image, as in Fashion-MNIST-C. Every split goes through the same evaluator as the clean test
set (:func:`fmnist.evaluation.metrics.compute_metrics`), so accuracy, NLL and ECE mean the same thing.

Corruption error follows Hendrycks & Dietterich (ICLR 2019): ``CE_c = E_c / E_c(reference)`` with
``E_c`` the error on corruption ``c`` (over all severities, here mixed per image), ``mCE`` the mean
of ``CE_c``; the relative ``CE_c = (E_c - E_clean) / (E_c(ref) - E_clean(ref))`` measures the drop
from clean accuracy against the reference's drop. Below 1 = more robust than the reference. The
reference is any run or baseline (``logreg`` by default: cheap and deterministic, the role AlexNet
plays for ImageNet-C) or the ``robustness.json`` of an earlier report on the very same set.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmnist.data.corrupted_sets import MANIFEST_NAME, corrupted_set, ensure_corrupted, read_corrupted_split
from fmnist.data.corruptions import CORRUPTIONS, SEVERITIES, SEVERITY_INDEPENDENT, Severity
from fmnist.data.sources import load_dataset
from fmnist.errors import FmnistError
from fmnist.evaluation.metrics import DEFAULT_BINS, compute_metrics
from fmnist.evaluation.scoring import Scorer
from fmnist.figures import trust as T
from fmnist.files import write_csv_atomic, write_json_atomic, write_text_atomic
from fmnist.outputs import refuse_run_folder
from fmnist.predictions import Predictions, json_default
from fmnist.serialization import read_json_capped
from fmnist.terminal import console

DEFAULT_REFERENCE = "logreg"
ROBUSTNESS_FILE = "robustness.json"


# -- predictions on the corrupted set ----------------------------------------------------------------
@dataclass
class CorruptedSetPredictions:
    """A model's predictions on the clean test split and on every corruption (with per-image severities)."""

    set_name: str
    set_id: dict[str, Any]  # what identifies the generated set: name, seed, severity, manifest hash
    clean: Predictions
    corrupted: dict[str, Predictions]
    severities: dict[str, np.ndarray]
    folder: Path
    data_dir: str | None = None


def _set_id(name: str, folder: Path, seed: int, severity: Severity) -> dict[str, Any]:
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    digest = hashlib.sha256(json.dumps(manifest["files"], sort_keys=True).encode()).hexdigest()
    return {"name": name, "seed": seed, "severity": severity, "files_sha256": digest,
            "generator_version": manifest.get("generator_version")}


def corrupted_predictions(scorer: Scorer, *, set_name: str = "fashion-c", data_dir: str | None = None, seed: int = 0,
                          severity: Severity = "random", corruptions: Sequence[str] | None = None) -> CorruptedSetPredictions:
    """Score ``scorer`` on the clean test split and each corruption of ``set_name`` (generated on first use)."""
    info = corrupted_set(set_name)
    data_dir = data_dir or scorer.meta.get("data_dir")
    folder = ensure_corrupted(set_name, data_dir, seed=seed, severity=severity)
    names = list(corruptions) if corruptions else list(CORRUPTIONS)
    data = load_dataset(info.base, data_dir)
    clean = scorer.predictions(data.test_images.numpy(), data.test_labels.numpy(), dataset=info.base,
                               keep_images=False)
    corrupted, severities = {}, {}
    for name in names:
        split = read_corrupted_split(folder, name)
        corrupted[name] = scorer.predictions(split.images, split.labels, dataset=info.base, split=name,
                                             keep_images=False)
        severities[name] = split.severities
    return CorruptedSetPredictions(set_name, _set_id(set_name, folder, seed, severity), clean, corrupted, severities,
                                   folder, data_dir)


# -- numbers -----------------------------------------------------------------------------------------
def robustness_summary(preds: CorruptedSetPredictions, reference: dict[str, Any] | None = None, *,
                       name: str | None = None, n_bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """Per-corruption accuracy / NLL / ECE / accuracy by severity, their means, and (with a reference) mCE."""
    clean = compute_metrics(preds.clean, n_bins=n_bins, top_k=())
    clean_error = 1.0 - clean["accuracy"]
    if reference is not None:
        _check_reference(reference, preds)
    rows = []
    for corruption, pred in preds.corrupted.items():
        m = compute_metrics(pred, n_bins=n_bins, top_k=())
        correct = pred.correct
        severities = preds.severities[corruption]
        by_severity = {str(s): float(correct[severities == s].mean()) for s in SEVERITIES if (severities == s).any()}
        row = {"corruption": corruption, "accuracy": m["accuracy"], "error": 1.0 - m["accuracy"], "nll": m["nll"],
               "ece": m["ece"], "mean_confidence": m["mean_confidence"], "accuracy_by_severity": by_severity}
        if reference is not None:
            ref_error, ref_clean = reference["errors"][corruption], reference["clean_error"]
            row["ce"] = _ratio(row["error"], ref_error)
            row["relative_ce"] = _ratio(row["error"] - clean_error, ref_error - ref_clean)
        rows.append(row)
    accuracies = [r["accuracy"] for r in rows]
    out = {
        "name": name or preds.clean.meta.get("run") or preds.clean.model, "model": preds.clean.model,
        "kind": preds.clean.meta.get("kind"), "set": preds.set_id, "n": preds.clean.n,
        "temperature": preds.clean.meta.get("temperature"),
        "clean": {"accuracy": clean["accuracy"], "error": clean_error, "nll": clean["nll"], "ece": clean["ece"]},
        "mean_accuracy": float(np.mean(accuracies)), "mean_error": float(1.0 - np.mean(accuracies)),
        "mean_nll": float(np.mean([r["nll"] for r in rows])), "mean_ece": float(np.mean([r["ece"] for r in rows])),
        "accuracy_drop": float(clean["accuracy"] - np.mean(accuracies)),
        "worst": min(rows, key=lambda r: r["accuracy"])["corruption"],
        "accuracy_by_severity": {str(s): _mean_at(preds, s) for s in SEVERITIES},
        "corruptions": rows,
    }
    if reference is not None:
        out["reference"] = {"name": reference["name"], "mean_accuracy": reference.get("mean_accuracy"),
                            "clean_accuracy": 1.0 - reference["clean_error"]}
        out["mce"] = _mean([r["ce"] for r in rows])
        out["relative_mce"] = _mean([r["relative_ce"] for r in rows])
    return out


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den > 0 else None


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept and len(kept) == len(values) else None


def _mean_at(preds: CorruptedSetPredictions, severity: int) -> float | None:
    """Accuracy over every image given ``severity``, of the corruptions whose output depends on it.

    Flips, the turn and inversion ignore their (still drawn) severity, so they would only flatten the curve.
    """
    hits = [preds.corrupted[c].correct[preds.severities[c] == severity] for c in preds.corrupted
            if c not in SEVERITY_INDEPENDENT]
    hits = np.concatenate(hits) if hits else np.zeros(0, bool)
    return float(hits.mean()) if len(hits) else None


def reference_errors(summary: dict[str, Any]) -> dict[str, Any]:
    """What mCE needs from a reference's summary: its name, clean error, per-corruption errors and set."""
    return {"name": summary["name"], "clean_error": summary["clean"]["error"], "set": summary["set"],
            "mean_accuracy": summary["mean_accuracy"],
            "errors": {r["corruption"]: r["error"] for r in summary["corruptions"]}}


def read_reference(path: str | Path) -> dict[str, Any]:
    """A reference from an earlier report's ``robustness.json`` (a file or its folder)."""
    path = Path(path)
    path = path / ROBUSTNESS_FILE if path.is_dir() else path
    try:
        return reference_errors(read_json_capped(path))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FmnistError(f"{path} is not a robustness report ({exc}); pass the robustness.json of "
                          f"`evaluate.py RUN --dataset fashion-c`, a run folder or a baseline name.") from None


def _check_reference(reference: dict[str, Any], preds: CorruptedSetPredictions) -> None:
    if reference.get("set") != preds.set_id:
        raise FmnistError(f"reference {reference.get('name')!r} was measured on another corrupted set "
                          f"({reference.get('set')}) than this one ({preds.set_id}); score it on the same set "
                          f"(same seed and severity) or pass it as a run or baseline name.")
    missing = sorted(set(preds.corrupted) - set(reference["errors"]))
    if missing:
        raise FmnistError(f"reference {reference['name']!r} has no result for {', '.join(missing)}; rerun it "
                          f"with every corruption.")


# -- report ------------------------------------------------------------------------------------------
def to_markdown(summaries: Sequence[dict[str, Any]]) -> str:
    """Corruptions as rows, models as columns (accuracy), then mean, clean, mCE and relative mCE."""
    names = [r["corruption"] for r in summaries[0]["corruptions"]]
    header = "| corruption | " + " | ".join(s["name"] for s in summaries) + " |"
    lines = [header, "|---|" + "---:|" * len(summaries)]
    for i, corruption in enumerate(names):
        lines.append(f"| {corruption} | " + " | ".join(f"{s['corruptions'][i]['accuracy']:.2%}" for s in summaries)
                     + " |")
    lines.append("| **mean** | " + " | ".join(f"**{s['mean_accuracy']:.2%}**" for s in summaries) + " |")
    lines.append("| clean | " + " | ".join(f"{s['clean']['accuracy']:.2%}" for s in summaries) + " |")
    for key, label in (("mce", "mCE"), ("relative_mce", "relative mCE")):
        if any(s.get(key) is not None for s in summaries):
            lines.append(f"| {label} (vs {summaries[0].get('reference', {}).get('name', '-')}) | "
                         + " | ".join(f"{s[key]:.3f}" if s.get(key) is not None else "-" for s in summaries) + " |")
    return "\n".join(lines) + "\n"


def write_robustness(summaries: Sequence[dict[str, Any]], out_dir: str | Path, *,
                     examples: CorruptedSetPredictions | None = None, plots: bool = True) -> list[str]:
    """``robustness.json`` (the first summary; the others under ``"models"``), ``.csv``, ``.md`` and figures."""
    out = Path(out_dir)
    refuse_run_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    main = summaries[0]
    files = [ROBUSTNESS_FILE, "robustness.csv", "robustness.md"]
    write_csv_atomic(out / "robustness.csv",
                     ["model", "corruption", "accuracy", "error", "nll", "ece", "ce", "relative_ce",
                      *(f"accuracy_severity_{s}" for s in SEVERITIES)],
                     ([s["name"], r["corruption"], *(_cell(r.get(k)) for k in
                       ("accuracy", "error", "nll", "ece", "ce", "relative_ce")),
                       *(_cell(r["accuracy_by_severity"].get(str(v))) for v in SEVERITIES)]
                      for s in summaries for r in s["corruptions"]))
    write_text_atomic(out / "robustness.md", to_markdown(summaries))
    if plots:
        accuracies = {s["name"]: {r["corruption"]: r["accuracy"] for r in s["corruptions"]} for s in summaries}
        T.corruption_accuracy(accuracies, out / "corruption_accuracy.png",
                              clean={s["name"]: s["clean"]["accuracy"] for s in summaries},
                              title=f"accuracy on {main['set']['name']} (random severity per image)")
        files.append("corruption_accuracy.png")
        T.severity_curves({s["name"]: s["accuracy_by_severity"] for s in summaries}, out / "corruption_severity.png",
                          clean={s["name"]: s["clean"]["accuracy"] for s in summaries},
                          title=f"accuracy by severity over {main['set']['name']} (flips, turn, inverse left out)")
        files.append("corruption_severity.png")
        if examples is not None:
            example_figure(examples, out / "corruption_examples.png")
            files.append("corruption_examples.png")
    report = {**main, "models": list(summaries[1:]), "files": files, "folder": str(out)}
    write_json_atomic(out / ROBUSTNESS_FILE, report, default=json_default)
    return files


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def example_figure(preds: CorruptedSetPredictions, path: str | Path, per_row: Sequence[int] = (0, 1, 9)) -> Path:
    """One test image of each class in ``per_row`` under every corruption, with its severity and the model's call."""
    folder, labels = preds.folder, preds.clean.labels
    picks = [int(np.flatnonzero(labels == c)[0]) for c in per_row if (labels == c).any()]
    data = load_dataset(corrupted_set(preds.set_name).base, preds.data_dir)
    clean = data.test_images.numpy()[picks]
    examples, captions = {}, {}
    for name in preds.corrupted:
        split = read_corrupted_split(folder, name)
        examples[name] = split.images[picks]
        right = preds.corrupted[name].correct[picks]
        captions[name] = " ".join(f"s{int(s)}{'' if ok else '✗'}" for s, ok in zip(split.severities[picks], right,
                                                                                     strict=True))
    return T.corruption_examples(clean, examples, path, captions=captions,
                                 title=f"{preds.set_name}: one example per corruption (sN = severity, "
                                       f"✗ = {preds.clean.meta.get('run') or preds.clean.model} wrong)")


def print_table(summaries: Sequence[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title=f"accuracy on {summaries[0]['set']['name']} (seed {summaries[0]['set']['seed']})")
    table.add_column("corruption")
    for s in summaries:
        table.add_column(s["name"], justify="right")
    for i, row in enumerate(summaries[0]["corruptions"]):
        table.add_row(row["corruption"], *(f"{s['corruptions'][i]['accuracy']:.4f}" for s in summaries))
    table.add_row("mean", *(f"{s['mean_accuracy']:.4f}" for s in summaries))
    table.add_row("clean", *(f"{s['clean']['accuracy']:.4f}" for s in summaries))
    for key, label in (("mce", "mCE"), ("relative_mce", "relative mCE")):
        if any(s.get(key) is not None for s in summaries):
            table.add_row(f"{label} vs {summaries[0]['reference']['name']}",
                          *(f"{s[key]:.3f}" if s.get(key) is not None else "-" for s in summaries))
    console().print(table)

