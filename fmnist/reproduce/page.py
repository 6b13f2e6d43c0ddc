"""The results pages of ``fmnist.reproduce``: RESULTS.md and an HTML page, written from the ledger alone.

Everything shown is read from the records in ``results/<budget>/`` (:mod:`fmnist.reproduce.collect`); the only
numbers typed in here are the studies' own published figures (``fmnist.studies``) that ours are set beside. The
HTML page is committed beside its figures in ``docs/results/<budget>/`` and loads plotly from a sibling file, so
the page itself stays small and diffs cleanly; the line that says when a page was written is the only one that
changes when the ledger does not.
"""

from __future__ import annotations

import html
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from fmnist.files import write_text_atomic
from fmnist.interpret.report import html_section
from fmnist.page_script import PAGE_JS
from fmnist.reproduce import tables as T
from fmnist.reproduce.collect import collect
from fmnist.reproduce.experiments import Budget
from fmnist.reproduce.readme import write_readme_block

WRITTEN_PREFIX = "page written"  # the one line that differs between two writes of the same ledger
PLOTLY_FILE = "plotly.min.js"


def provenance(data: dict[str, Any], budget: Budget, written: str) -> dict[str, Any]:
    return {"budget": budget.name, "description": budget.description, "commits": data["commits"],
            "machines": data["machines"], "precisions": data["precisions"], "seconds": data["seconds"],
            "records": data["records"], "current": data["current"], "stale": data["stale"], "written": written,
            "scored_again": data["scored_again"]}


def stale_sentence(prov: dict[str, Any]) -> str | None:
    stale = prov["stale"]
    if not stale:
        return None
    names = ", ".join(f"{s['experiment']} {s['item']} ({s['device']}, {s['commit']})" for s in stale[:12])
    more = f" and {len(stale) - 12} more" if len(stale) > 12 else ""
    return (f"{len(stale)} record(s) made with an older recipe are stale and not shown: {names}{more}; rerun "
            f"their pieces (`python -m fmnist.reproduce --budget {prov['budget']} --only NAME`).")


def header_lines(prov: dict[str, Any]) -> list[str]:
    lines = [f"> {prov['description']}", "",
             f"- From the ledger: {prov['current']} current record(s) in `results/{prov['budget']}/` "
             f"(`python -m fmnist.reproduce --budget {prov['budget']} --report-only` rewrites this page from them).",
             f"- Code: records made at commit(s) {', '.join(f'`{c}`' for c in prov['commits']) or '—'}; machine(s): "
             f"{'; '.join(prov['machines']) or '—'}{T.precision_note(prov['precisions'])}.",
             f"- Time: {T.seconds_text(prov['seconds'] or None)} of compute for the records below.",
             "- Numbers are mean ± sample std over seeds (CV: over folds); `—` = no record under this budget yet "
             f"(`python -m fmnist.reproduce --budget {prov['budget']} --only NAME`)."]
    if sentence := stale_sentence(prov):
        lines.append(f"- {sentence}")
    if again := prov.get("scored_again"):
        lines.append("- Scored on runs trained again (the checkpoints their accuracy rows name were lost with an "
                     f"earlier machine; same recipe, maybe another precision): {'; '.join(again)}.")
    lines += [f"- {WRITTEN_PREFIX} {prov['written']}.", ""]
    return lines


def markdown(data: dict[str, Any], prov: dict[str, Any]) -> str:
    rows = data["rows"]
    lines = [f"# Results: both studies re-run with fmnist ({prov['budget']} budget)", "", *header_lines(prov),
             "## Every experiment next to the studies", "",
             *T.markdown_table([*T.EXPERIMENT_HEADER, "params"],
                               [[*T.experiment_cells(r), f"{r['params']:,}" if isinstance(r.get("params"), int)
                                 else "—"] for r in T.experiment_rows(rows)])]
    if skipped := [r for r in rows if r["not_run"]]:
        lines += ["", "### Not run on this machine", ""]
        lines += [f"- **{r['title']}**: {r['not_run']}." for r in skipped]
    if whys := [r for r in rows if r.get("why")]:
        lines += ["", "### Where ours differs from a study by more than 1 point", ""]
        lines += [f"- **{r['title']}** ({T.pct(r['mean'])} vs {T.pct(r['study'])}): {r['why']}" for r in whys]
    lines += T.class_weight_lines(rows)
    sections: list[tuple[str, list[str], list[list[str]]]] = [
        ("3-fold cross-validation (each fold scored on the same 10,000 test images)", T.CV_HEADER, T.cv_rows(rows)),
        ("scikit-learn baselines", T.BASELINE_HEADER, T.baseline_rows(rows)),
        ("Cross-dataset: Fashion-MNIST models on MNIST digits (chance: 10%)", T.CROSS_HEADER, T.cross_rows(rows)),
        ("Real phone photos (215 labelled development photos, `fashion` preprocessing)", T.PHOTO_HEADER,
         T.photo_rows(rows)),
    ]
    for heading, head, body in sections:
        if body:
            lines += ["", f"## {heading}", "", *T.markdown_table(head, body)]
    if robust := T.robustness_rows(rows):
        lines += ["", f"## {T.ROBUSTNESS_TITLE}", "", *T.markdown_table(T.ROBUSTNESS_HEADER, robust),
                  "", f"{T.most_robust(rows)} NLL and ECE on the 10,000 test images; the temperature is fitted on "
                  "the validation split (`evaluate.py ensemble --calibrate`); Mahalanobis is fitted on 10,000 "
                  "training images of each member."]
    elif len(data.get("seeds", ())) < 2:
        lines += ["", f"## {T.ROBUSTNESS_TITLE}", "", f"Not run under this budget: it trains {len(data['seeds'])} "
                  "seed per model and the robustness table compares ensembles of a model's seeds (`python -m "
                  "fmnist.reproduce --only deep robustness --seeds 42 43`)."]
    if explain := T.explain_rows(rows):
        lines += ["", "## Can the explanations be trusted? (first seed of each CNN, `evaluate.py explain-check`)", "",
                  *T.markdown_table(T.EXPLAIN_HEADER, explain)]
    per_class = [(T.title(r), r["report"]) for r in rows if (r.get("report") or {}).get("per_class")]
    if per_class:
        names = [p["name"] for p in per_class[0][1]["per_class"]]
        lines += ["", "## Per-class F1 (first seed of each CNN; baselines)", "",
                  *T.markdown_table(["run", *names],
                                    [[n, *(f"{p['f1']:.3f}" for p in rep["per_class"])] for n, rep in per_class])]
    images = next((r.get("images") for r in rows if r["kind"] == "gradcam" and r["device"] == "cpu"), None) or []
    if images:
        lines += ["", "## Grad-CAM (most confident right and wrong test image per class)", ""]
        lines += [f"![{Path(p).stem}]({p})" for p in images]
    lines += ["", f"Training curves, confusion matrices and interactive charts: the HTML page "
              f"(`docs/results/{prov['budget']}/index.html`, written by the same command).", ""]
    return "\n".join(lines)


# -- HTML ----------------------------------------------------------------------------------------------------
def _figures(rows: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    figs: list[tuple[str, Any]] = []
    scored = [r for r in T.experiment_rows(rows) if r.get("mean") is not None]
    if scored:
        names = [T.title(r) for r in scored]
        fig = go.Figure()
        fig.add_bar(name="ours", x=names, y=[100 * r["mean"] for r in scored],
                    error_y={"type": "data", "array": [100 * (r.get("std") or 0) for r in scored]})
        fig.add_bar(name="study", x=names, y=[100 * r["study"] if r.get("study") is not None else None for r in scored])
        fig.add_scatter(name="published anchor", mode="markers", x=names,
                        y=[100 * r["anchor"] if r.get("anchor") else None for r in scored],
                        marker={"symbol": "line-ew-open", "size": 22, "line": {"width": 3}, "color": "black"})
        fig.update_layout(title="Test accuracy: ours vs the studies vs the published anchors", barmode="group",
                          yaxis={"title": "accuracy (%)", "range": [max(0, min(100 * r["mean"] for r in scored) - 8),
                                                                     100]}, template="plotly_white", height=460)
        figs.append(("Every experiment", fig))
    curves = [(T.title(r), r["curves"]) for r in rows if r.get("curves")]
    for tag, label in (("val_acc", "validation accuracy"), ("val_loss", "validation loss")):
        fig = go.Figure()
        for name, curve in curves:
            if curve.get(tag):
                fig.add_scatter(name=name, x=list(range(1, len(curve[tag]) + 1)), y=curve[tag], mode="lines+markers")
        if fig.data:
            fig.update_layout(title=f"Training curves: {label} per epoch (first seed)", xaxis_title="epoch",
                              yaxis_title=label, template="plotly_white", height=420)
            figs.append((f"Training curves: {label}", fig))
    reports = [(T.title(r), r["kind"], r["report"]) for r in rows if (r.get("report") or {}).get("per_class")]
    if reports:
        fig = go.Figure()
        for name, _, rep in reports:
            fig.add_bar(name=name, x=[p["name"] for p in rep["per_class"]], y=[p["f1"] for p in rep["per_class"]])
        fig.update_layout(title="Per-class F1 on the test set", barmode="group", yaxis_title="F1",
                          template="plotly_white", height=460)
        figs.append(("Per-class F1", fig))
    for name, kind, rep in reports:
        if kind == "baseline" or "confusion_matrix" not in rep:
            continue
        names = rep["class_names"]
        fig = go.Figure(go.Heatmap(z=rep["confusion_matrix"], x=names, y=names, colorscale="Blues",
                                   texttemplate="%{z}", hovertemplate="true %{y}<br>predicted %{x}: %{z}<extra></extra>"))
        fig.update_layout(title=f"Confusion matrix: {name} (rows true, columns predicted)", template="plotly_white",
                          yaxis={"autorange": "reversed"}, height=520, width=640)
        figs.append((f"Confusion matrix: {name}", fig))
    return figs


def _table(headers: list[str], body: list[list[str]], escape: Callable[[str], str] = html.escape) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    rows = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def html_page(data: dict[str, Any], prov: dict[str, Any], page_dir: Path, repo: Path) -> str:
    """The page, for ``page_dir``: figures committed in the repository are linked relative to it."""
    e = html.escape
    rows = data["rows"]

    def link(path: str) -> str:
        return Path(os.path.relpath((repo / path).resolve(), page_dir.resolve())).as_posix()

    parts = [f"<h1>Results: both studies re-run with fmnist ({e(prov['budget'])} budget)</h1>",
             f"<p class='budget'>{e(prov['description'])}</p>", "<ul>"]
    parts += [f"<li>{e(line.removeprefix('- '))}</li>" for line in header_lines(prov)[2:] if line.startswith("- ")]
    parts.append("</ul>")
    body = []
    for r in T.experiment_rows(rows):
        note = r.get("why") or (f"not run on this machine: {r['not_run']}" if r["not_run"] else "")
        body.append([*T.experiment_cells(r), note])
    parts += ["<h2>Every experiment next to the studies</h2>", _table([*T.EXPERIMENT_HEADER, "why it differs (> 1 point)"],
                                                                      body)]
    for heading, head, table in (("Baselines", T.BASELINE_HEADER, T.baseline_rows(rows)),
                                 (T.CLASS_WEIGHT_TITLE, T.CLASS_WEIGHT_HEADER, T.class_weight_rows(rows)),
                                 ("3-fold cross-validation", T.CV_HEADER, T.cv_rows(rows)),
                                 ("Cross-dataset: Fashion-MNIST models on MNIST digits", T.CROSS_HEADER,
                                  T.cross_rows(rows)),
                                 ("Real phone photos", T.PHOTO_HEADER, T.photo_rows(rows)),
                                 (T.ROBUSTNESS_TITLE, T.ROBUSTNESS_HEADER, T.robustness_rows(rows)),
                                 ("Can the explanations be trusted?", T.EXPLAIN_HEADER, T.explain_rows(rows))):
        if table:
            parts += [f"<h2>{e(heading)}</h2>", _table(head, table)]
    for number, (heading, fig) in enumerate(_figures(rows), start=1):  # fixed ids: the same ledger, the same page
        parts += [f"<h2>{e(heading)}</h2>", fig.to_html(full_html=False, include_plotlyjs=False,
                                                        div_id=f"chart-{number}")]
    gradcam = next((r for r in rows if r["kind"] == "gradcam" and r["device"] == "cpu"), {})
    if gradcam.get("images"):
        parts.append("<h2>Grad-CAM gallery</h2>")
        parts += [f"<figure><img alt='{e(Path(p).stem)}' src='{e(link(p))}'><figcaption>{e(Path(p).stem)}"
                  f"</figcaption></figure>" for p in gradcam["images"]]
    explain = next((r for r in rows if r["kind"] == "explain" and r["device"] == "cpu"), {})
    for entry in explain.get("explain", []):
        figures = {name: link(path) for name, path in entry["figures"].items()}
        parts.append(html_section(entry["summary"], figures=figures))
    style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;"
             "padding:4px 8px;text-align:left}th{background:#f3f3f3}.budget{background:#fff4d6;padding:.6em;"
             "border-left:4px solid #e0a800}img{max-width:100%}#js-errors{color:#b00}")
    plotly = link(f"docs/results/{PLOTLY_FILE}")
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>fmnist results</title>"
            f"<style>{style}</style><script>{PAGE_JS}</script><script src='{e(plotly)}'></script></head><body>"
            + "\n".join(parts) + "<pre id='js-errors'></pre></body></html>\n")


def write_plotly(repo: Path) -> Path:
    """plotly.js beside the pages (rewritten only when the installed plotly's differs)."""
    path = repo / "docs" / "results" / PLOTLY_FILE
    text = get_plotlyjs()
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        write_text_atomic(path, text)
    return path


def write_results(ledger: Path, budget: Budget, repo: Path | None = None, data_dir: str | None = None,
                  written: str | None = None) -> Path:
    """Write ``RESULTS*.md``, ``docs/results/<budget>/index.html`` and (full budget) README's table; return the
    Markdown path. ``written``: the page's date line (default: now)."""
    repo = Path(repo) if repo else Path.cwd()
    data = collect(Path(ledger), budget, data_dir)
    prov = provenance(data, budget, written or time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    md_path = repo / budget.results_md
    write_text_atomic(md_path, markdown(data, prov))
    page = repo / budget.report_dir / "index.html"
    write_plotly(repo)
    write_text_atomic(page, html_page(data, prov, page.parent, repo))
    if budget.name == "full":
        write_readme_block(repo / "README.md", data, Path(ledger))
    print(f"wrote {md_path} and {page}")
    return md_path
