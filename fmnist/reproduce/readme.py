"""README's results section, generated from the ledger between two marker comments; never typed by hand.

``python -m fmnist.reproduce --budget full --report-only`` rewrites the lines between :data:`BEGIN` and
:data:`END` in README.md; a test regenerates them from the committed ledger and fails when README differs. The
block holds no date, so the same ledger always gives the same README.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fmnist.errors import FmnistError
from fmnist.files import write_text_atomic
from fmnist.reproduce import tables as T
from fmnist.reproduce.speed import KERAS_RATIO, TIME_TO_ACCURACY, speed_records

BEGIN = "<!-- results:begin (generated from results/ by `python -m fmnist.reproduce --budget full --report-only`; do not edit) -->"
END = "<!-- results:end -->"


def _values(row: dict[str, Any]) -> str:
    values = row.get("values") or []
    return " / ".join(T.pct(v) for v in values) if len(values) > 1 else ""


def _ours(row: dict[str, Any]) -> str:
    if row.get("mean") is None:
        return f"not run here: {row['not_run']}" if row.get("not_run") else "—"
    text = f"**{T.pct(row['mean'], row.get('std'))}**"
    if row["metric"] == "val":
        text += " (validation)"
    if values := _values(row):
        text += f" ({values})"
    return text + T.mixed_precision(row)


def _published(row: dict[str, Any]) -> str:
    parts = [row["study_text"]] if row.get("study_text") else []
    if row.get("anchor") is not None:
        parts.append(f"{T.pct(row['anchor'])} {row['anchor_text']}")
    return "; ".join(parts) or "—"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def main_table(rows: list[dict[str, Any]]) -> list[str]:
    """One line per experiment: ours (mean ± std, per seed), n, the studies' and published figures, commits."""
    lines = ["| experiment | ours | n | published | commit(s) |", "|---|---|---:|---|---|"]
    for row in rows:
        if row["kind"] == "train":
            lines.append(f"| {_cell(T.title(row))} (`{row['name']}`) | {_cell(_ours(row))} | {row['n']} | "
                         f"{_cell(_published(row))} | {', '.join(row['commits']) or '—'} |")
    cv = [r for r in rows if r["kind"] == "cv" and r.get("mean") is not None]
    if cv:
        lines.append("| 3-fold CV " + " / ".join(f"`{r['name'].removeprefix('cv-')}`" for r in cv) + " | "
                     + " / ".join(T.pct(r["mean"], r["std"]) for r in cv) + " | 3 folds | B: "
                     + " / ".join(r["study_text"].removeprefix("B: ") or "—" for r in cv) + " | "
                     + ", ".join(sorted({c for r in cv for c in r["commits"]})) + " |")
    base = [r for r in rows if r["kind"] == "baseline" and r.get("mean") is not None and r["device"] == "cpu"]
    if base:
        lines.append("| baselines " + " / ".join(r["name"].removeprefix("baseline-") for r in base) + " | "
                     + " / ".join(T.pct(r["mean"]) for r in base) + " | 1 | benchmark: "
                     + " / ".join(T.pct(r["anchor"]) for r in base) + " | "
                     + ", ".join(sorted({c for r in base for c in r["commits"]})) + " |")
    if cross := T.cross_rows(rows):
        lines.append("| on MNIST digits: " + " / ".join(f"`{c[0]}`" for c in cross) + " | "
                     + " / ".join(c[1] for c in cross) + " | 1 | B: " + " / ".join(c[2] for c in cross)
                     + " (chance 10%) | " + _piece_commits(rows, "cross") + " |")
    mean, std, n = T.photo_summary(rows)
    if n:
        ensemble = next((p for p in T.piece(rows, "photos").get("photos", []) if len(p["seeds"]) > 1), None)
        others = [p for p in T.piece(rows, "photos").get("photos", []) if p["model"] != "photo"]
        text = f"**{T.pct(mean, std)}**" + (f"; the seeds' ensemble {T.pct(ensemble['accuracy'])}" if ensemble else "")
        text += "".join(f"; `{p['model']}` {T.pct(p['accuracy'])}" for p in others)
        lines.append(f"| 215 real phone photos, `configs/photo.yaml` | {text} | {n} | B: 53–61% on 15 web photos | "
                     f"{_piece_commits(rows, 'photos')} |")
    for summary in T.piece(rows, "robustness").get("robustness", []):
        cells = T.robustness_cells(summary)
        lines.append(f"| robustness, `{summary['name']}` (seeds as one ensemble) | accuracy {cells[2]}; NLL {cells[3]};"
                     f" ECE {cells[4]}; corruptions {cells[5]}; OOD AUROC vs MNIST {cells[6]} | {cells[1]} | "
                     "LeNet-5 ×10: NLL 0.200, ECE 0.010; DUQ AUROC 0.955 | " + _piece_commits(rows, "robustness") + " |")
    for cells in T.explain_rows(rows):
        lines.append(f"| explanations, `{cells[0]}` ({cells[1]}) | blank {cells[3]}, deletion/random {cells[4]}, "
                     f"rank corr. after randomisation {cells[6]}: {cells[7]} goals | 1 | goals ≤ 1% / ≤ 0.6 / ≤ 0.2 | "
                     + _piece_commits(rows, "explain") + " |")
    return lines


def _piece_commits(rows: list[dict[str, Any]], kind: str) -> str:
    return ", ".join(T.piece(rows, kind).get("commits") or []) or "—"


def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def speed_lines(current: Sequence[Mapping[str, Any]], stale: Sequence[Mapping[str, Any]]) -> list[str]:
    """Time to accuracy per speedrun recipe and the ratio to the studies' Keras code, from the speed records."""
    runs: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    ratios = []
    for record in current:
        if record["kind"] == TIME_TO_ACCURACY:
            recipe, prov = record["recipe"], record["provenance"]
            label = (record["experiment"] + (" (all 60,000 images)" if recipe.get("benchmark.train_on_validation")
                                             else "") + (", warm server" if recipe.get("benchmark.warm_server") else ""))
            machine = ", ".join(x for x in (record["device"], prov.get("device_name"), prov.get("precision")) if x)
            runs[(label, machine)].append(record)
        elif record["kind"] == KERAS_RATIO:
            ratios.append(record)
    if not runs and not ratios:
        return []
    lines = ["", "**Speed** (`python benchmarks/time_to_accuracy.py`: process wall time from start to test score, "
             "mean ± std over seeds, nothing else running; a warm server's runs start with the libraries "
             "imported, `fmnist warm start`):", "",
             "| recipe | target | test accuracy | seconds | n | reached (mean ≥ target) | machine | commit(s) |",
             "|---|---:|---|---|---:|---|---|---|"]
    for (name, device), group in sorted(runs.items()):
        target = group[0]["metrics"]["target"]
        accuracy = _mean_std([r["metrics"]["test_acc"] for r in group])
        seconds = _mean_std([r["metrics"]["process_seconds"] for r in group])
        lines.append(f"| `{name}` | {T.pct(target)} | {T.pct(*accuracy)} | {seconds[0]:.1f}"
                     + (f" ± {seconds[1]:.1f}" if seconds[1] is not None else "") + f" | {len(group)} | "
                     f"{'yes' if accuracy[0] >= target else 'no'} | {device} | "
                     + ", ".join(sorted({r['provenance'].get('git_commit') or '?' for r in group})) + " |")
    for record in sorted(ratios, key=lambda r: r["item"]):
        metrics = record["metrics"]
        pairs = ", ".join(f"{p['ratio']:.2f}" for p in metrics["pairs"])
        verdict = "reached" if metrics["median_ratio"] <= metrics["goal"] else "not reached"
        machine = record["provenance"].get("device_name")
        lines += ["", f"Against the studies' Keras code ({metrics['day']}{', ' + machine if machine else ''}, "
                      f"`{record['recipe']['model']}`, batch "
                      f"{record['recipe']['batch_size']}, Adam, {metrics['precision']}, `python "
                      f"benchmarks/epoch_time.py`): ours {metrics['ours_median']:.1f} s per epoch, Keras "
                      f"{metrics['keras_median']:.1f} s; ratio **{metrics['median_ratio']:.2f}** (median of the pairs "
                      f"{pairs}; goal ≤ {metrics['goal']:.2f} on two days: {verdict} this day)."]
    if stale:
        lines += ["", f"{len(stale)} speed record(s) of older recipes are left out."]
    return lines


def block(data: dict[str, Any], ledger: Path) -> list[str]:
    """The lines between the markers."""
    rows = data["rows"]
    stale = (f" {len(data['stale'])} stale record(s) (older recipes) are left out; RESULTS.md names them."
             if data["stale"] else "")
    lines = [f"Full budget, from {data['current']} records in [`results/full/`](results/full) on "
             f"{'; '.join(data['machines']) or '—'}{T.precision_note(data['precisions'])}: test accuracy on the "
             f"10,000 test images, mean ± sample std over seeds {'/'.join(str(s) for s in data['seeds'])} (CV: over "
             f"folds), each seed in brackets.{stale} Every piece: `python -m fmnist.reproduce --budget full --only "
             f"NAME`, NAME in backticks; the whole page: [RESULTS.md](RESULTS.md).", "", *main_table(rows)]
    if skipped := [r for r in rows if r["not_run"]]:
        lines += ["", *(f"- `{r['name']}` not run on this machine: {r['not_run']}." for r in skipped)]
    lines += speed_lines(*speed_records(ledger))
    return lines


def replace_block(text: str, lines: list[str], path: Path) -> str:
    """``text`` with the lines between the markers replaced; missing markers are one sentence."""
    if BEGIN not in text or END not in text or text.index(BEGIN) > text.index(END):
        raise FmnistError(f"{path} has no results block; put the two lines\n{BEGIN}\n{END}\nwhere the results "
                          f"table belongs.")
    before, rest = text.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    return before + BEGIN + "\n" + "\n".join(lines) + "\n" + END + after


def write_readme_block(readme: Path, data: dict[str, Any], ledger: Path) -> Path:
    text = readme.read_text(encoding="utf-8")
    new = replace_block(text, block(data, ledger), readme)
    if new != text:
        write_text_atomic(readme, new)
    return readme
