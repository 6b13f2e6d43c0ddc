"""Tables of the results pages, as rows of cells: RESULTS.md, the HTML page and README render the same cells.

Each function takes the rows :func:`fmnist.reproduce.collect.collect` built from the ledger and returns strings;
nothing here reads a file or computes a metric.
"""

from __future__ import annotations

import statistics
from typing import Any

from fmnist.studies import ROBUSTNESS_ANCHORS

# (without, with) study B's Shirt x2 class weight: the page sets the trade side by side.
CLASS_WEIGHT_PAIRS = (("deep", "deep-shirt-weight"),)


CLASS_WEIGHT_TITLE = "Study B's Shirt x2 class weight (study B: Shirt errors 25% -> 13%)"
CLASS_WEIGHT_HEADER = ["model", "Shirt weight", "test accuracy", "Shirt accuracy", "Shirt errors", "n"]


def class_weight_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """Study B's Shirt x2: what it buys (Shirt accuracy) and what it costs (overall), mean over seeds."""
    by_name = {r["name"]: r for r in rows}
    cells = []
    for plain, weighted in CLASS_WEIGHT_PAIRS:
        pair = [by_name.get(plain), by_name.get(weighted)]
        if all(row and row.get("shirt_acc") is not None for row in pair):
            cells += [[plain, f"x{weight}", pct(row["test_acc"]), pct(row["shirt_acc"]), pct(1 - row["shirt_acc"]),
                       str(row["n"])] for row, weight in zip(pair, (1, 2), strict=True)]
    return cells


def class_weight_lines(rows: list[dict[str, Any]]) -> list[str]:
    cells = class_weight_rows(rows)
    if not cells:
        return []
    return ["", f"## {CLASS_WEIGHT_TITLE}", "", "| " + " | ".join(CLASS_WEIGHT_HEADER) + " |",
            "|---|---|---:|---:|---:|---:|", *("| " + " | ".join(c) + " |" for c in cells)]


ROBUSTNESS_TITLE = ("Robustness: corrupted images, out-of-distribution inputs, calibration (each model's seeds "
                    "as one ensemble)")
ROBUSTNESS_HEADER = ["model", "n", "accuracy: members → ensemble", "NLL: members → ensemble → calibrated (T)",
                     "ECE: ensemble → calibrated", "mean accuracy on fashion-c: members → ensemble",
                     "OOD AUROC vs MNIST (ensemble): msp / energy / Mahalanobis", "vs noise (best score)"]


def _number(value: Any, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def robustness_cells(summary: dict[str, Any]) -> list[str]:
    """One model's row: members' means next to the ensemble's figures, read from its ``ensemble.json``."""
    members, ensemble = summary["members"], summary["ensemble"]

    def members_mean(key: str) -> float | None:
        values = [m[key] for m in members if m.get(key) is not None]
        return statistics.fmean(values) if values else None

    calibration = summary.get("calibration") or {}
    after = (calibration.get("test") or {}).get("after") or {}
    temperature = f" (T {calibration['temperature']:.2f})" if calibration else ""
    corruption = summary.get("robustness") or {}
    member_corruption = [corruption[m["name"]]["mean_accuracy"] for m in members if m["name"] in corruption]
    auroc = (summary.get("ood_auroc") or {}).get(summary["name"], {})
    noise = (summary.get("ood") or {}).get(summary["name"], {}).get("noise")
    return [summary["name"], str(len(members)),
            f"{pct(members_mean('accuracy'))} → {pct(ensemble['accuracy'])}",
            f"{_number(members_mean('nll'))} → {_number(ensemble['nll'])} → {_number(after.get('nll'))}{temperature}",
            f"{_number(ensemble['ece'])} → {_number(after.get('ece'))}",
            f"{pct(statistics.fmean(member_corruption) if member_corruption else None)} → "
            f"{pct((corruption.get(summary['name']) or {}).get('mean_accuracy'))}",
            " / ".join(_number(auroc.get(f"mnist {score}")) for score in ("msp", "energy", "mahalanobis")),
            f"{_number(noise['auroc'])} ({noise['score']})" if noise else "—"]


def _robustness_summaries(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``ensemble.json`` of each model the robustness piece has evaluated (none: the piece has not run)."""
    piece = next((r for r in rows if r["kind"] == "robustness"), None)
    return (piece or {}).get("robustness", [])


def robustness_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """The robustness table's body: our ensembles, then the published anchors (issue 17)."""
    ours = [robustness_cells(s) for s in _robustness_summaries(rows)]
    if not ours:
        return []
    anchors = [[f"anchor: {a['name']}", str(a["n"]), pct(a.get("accuracy")), _number(a.get("nll")),
                _number(a.get("ece")), "—", _number(a.get("auroc_mnist")), "—"] for a in ROBUSTNESS_ANCHORS]
    return ours + anchors


def most_robust(rows: list[dict[str, Any]]) -> str | None:
    """The sentence naming the model (member or ensemble) with the best mean accuracy on the corrupted set."""
    scored = [(value["mean_accuracy"], name) for s in _robustness_summaries(rows)
              for name, value in (s.get("robustness") or {}).items()]
    if not scored:
        return None
    best, name = max(scored)
    return f"Most robust by mean accuracy over the 16 corruptions: {name} ({pct(best)})."


# -- formatting -------------------------------------------------------------------------------------------
def pct(value: float | None, std: float | None = None) -> str:
    if value is None:
        return "—"
    return f"{100 * value:.2f}%" + (f" ± {100 * std:.2f}" if std is not None else "")


def seconds_text(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 1:  # KNN's fit, a linear model's predict: "0 s" would read as not measured
        return "< 1 s"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"


SCORED_KINDS = ("train", "cv", "baseline")


def experiment_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of the main table: every experiment with one score per seed (or fold, or fit)."""
    return [r for r in rows if r["kind"] in SCORED_KINDS]


def title(r: dict[str, Any]) -> str:
    """An experiment's title, with the device where it is not the CPU."""
    return r["title"] + ("" if r["device"] == "cpu" else f" [{', '.join(r['device_names'])}]")


EXPERIMENT_HEADER = ["experiment", "ours", "n", "study", "published anchor", "epochs", "s/epoch", "commit(s)"]


def experiment_cells(r: dict[str, Any], escape: Any = str) -> list[str]:
    """experiment, ours, n, study, published anchor, epochs, s/epoch, commits: RESULTS.md and the HTML page."""
    metric = " (val)" if r["metric"] == "val" else ""
    anchor = f"{pct(r['anchor'])} {escape(r['anchor_text'])}" if r.get("anchor") else ""
    epochs = "/".join(str(x) for x in r.get("epochs") or []) or "—"
    return [escape(title(r)), pct(r.get("mean"), r.get("std")) + metric + escape(mixed_precision(r)), str(r.get("n", 0)),
            escape(r["study_text"]), anchor, epochs, seconds_text(r.get("seconds_per_epoch")),
            escape(", ".join(r.get("commits") or []) or "—")]


def mixed_precision(r: dict[str, Any]) -> str:
    """Which seeds trained in which precision, only where a row's seeds differ ('' otherwise).

    Why: the default precision follows the machine (bf16 autocast where the CPU has it natively), so a row resumed
    on another machine can mix float32 and bf16 seeds; its mean is then said to be of both, never silently.
    """
    by_precision: dict[str, list[str]] = {}
    for seed, precision in r.get("seed_precisions") or []:
        by_precision.setdefault(precision or "unknown", []).append(f"s{seed}")
    if len(by_precision) < 2:
        return ""
    return " [" + "; ".join(f"{p}: {', '.join(seeds)}" for p, seeds in sorted(by_precision.items())) + "]"


def precision_note(precisions: list[str]) -> str:
    """How the CNNs computed (runs record it since the bf16 default on CPUs with native bf16); '' when unknown."""
    return f"; CNN training precision: {', '.join(precisions)}" if precisions else ""


def piece(rows: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next((r for r in rows if r["kind"] == kind and r["device"] == "cpu"), {})


CV_HEADER = ["model", "fold 1", "fold 2", "fold 3", "mean ± std", "study B", "epochs", "commit(s)"]


def cv_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for r in rows:
        if r["kind"] == "cv" and r.get("folds"):
            folds = [pct(f["test_acc"]) for f in r["folds"]] + ["—"] * (3 - len(r["folds"]))
            out.append([title(r), *folds, pct(r["mean"], r["std"]), r["study_text"],
                        "/".join(str(e) for e in r["epochs"]), ", ".join(r["commits"])])
    return out


BASELINE_HEADER = ["baseline", "accuracy", "macro-F1", "train images", "fit", "predict (test)", "study A",
                   "benchmark"]


def baseline_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    return [[r["name"].removeprefix("baseline-") + ("" if r["device"] == "cpu" else f" [{r['device']}]"),
             pct(r["mean"]), f"{r['macro_f1']:.4f}", f"{r.get('n_train') or 0:,}", seconds_text(r.get("fit_seconds")),
             seconds_text(r.get("predict_seconds")), r["study_text"], pct(r["anchor"])]
            for r in rows if r["kind"] == "baseline" and r.get("mean") is not None]


CROSS_HEADER = ["model", "ours", "study B"]


def cross_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    return [[c["model"], pct(c["accuracy"]), pct(c["study"])] for c in piece(rows, "cross").get("cross", [])]


EXPLAIN_GOALS = {"blank": 0.01, "deletion": 0.6, "randomisation": 0.2}
EXPLAIN_HEADER = ["model", "method at layer", "test images", "blank maps (goal ≤ 1%)",
                  "deletion AUC / random order (goal ≤ 0.6)", "insertion AUC / random",
                  "rank corr. after randomisation (goal ≤ 0.2)", "goals met"]


def explain_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """Each model's explanation checks (its default method): can its maps be trusted?"""
    out = []
    for entry in piece(rows, "explain").get("explain", []):
        summary = entry["summary"]
        for method in summary["methods"].values():
            blank = method["maps"]["blank_rate"]
            deletion = method["faithfulness"]["deletion"]["ratio_random"]
            randomisation = method["randomisation"]["final_spearman_mean"]
            met = [blank <= EXPLAIN_GOALS["blank"], deletion is not None and deletion <= EXPLAIN_GOALS["deletion"],
                   randomisation is not None and randomisation <= EXPLAIN_GOALS["randomisation"]]
            out.append([entry["model"], f"{method['title']} at {method['layer'] or 'pixels'}", f"{summary['n']:,}",
                        pct(blank), _number(deletion, 2), _number(method["faithfulness"]["insertion"]["ratio_random"], 2),
                        _number(randomisation, 2), f"{sum(met)} of 3"])
    return out


PHOTO_HEADER = ["model", "seeds", "accuracy on the photos", "photos"]


def photo_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    return [[p["model"] + (" (ensemble of the seeds)" if len(p["seeds"]) > 1 else ""),
             "/".join(str(s) for s in p["seeds"]), pct(p["accuracy"]), str(p["n"])]
            for p in piece(rows, "photos").get("photos", [])]


def photo_summary(rows: list[dict[str, Any]], model: str = "photo") -> tuple[float | None, float | None, int]:
    """Mean and std over the single-seed photo evaluations of ``model``, and how many."""
    values = [p["accuracy"] for p in piece(rows, "photos").get("photos", [])
              if p["model"] == model and len(p["seeds"]) == 1]
    if not values:
        return None, None, 0
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None), len(values)


def markdown_table(header: list[str], body: list[list[str]]) -> list[str]:
    """A Markdown table (numbers right-aligned from the second column on)."""
    return ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1),
            *("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in body)]


