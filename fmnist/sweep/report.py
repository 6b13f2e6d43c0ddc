"""The sweep's report: a table of trials, Optuna's plots (plotly) in one self-contained HTML page, and Markdown.

The HTML page carries plotly.js inline (it opens offline, from an e-mail or a cluster's scratch disk) and
a script that stamps how many charts drew, so ``python -m fmnist.reproduce.html_check`` checks it in
headless Chromium like the results page.
"""

from __future__ import annotations

import csv
import html
import io
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna import visualization
from optuna.importance import FanovaImportanceEvaluator
from optuna.trial import TrialState
from plotly.offline import get_plotlyjs

from fmnist.page_script import PAGE_JS
from fmnist.sweep.final import best_trial, write_atomic
from fmnist.sweep.storage import display_url
from fmnist.sweep.study import Sweep

HTML_FILE, MARKDOWN_FILE, CSV_FILE = "report.html", "report.md", "trials.csv"


def _seconds(trial: optuna.trial.FrozenTrial) -> float | None:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return None
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per trial: state, value, parameters, epochs, seconds, folder and what happened to it."""
    trials = study.get_trials(deepcopy=False)
    retried_as = {t.system_attrs["retry_history"][-1]: t.number for t in trials if t.system_attrs.get("retry_history")}
    rows = []
    for t in trials:
        attrs, notes = t.user_attrs, []
        if attrs.get("role") == "baseline":
            notes.append("baseline: the base config's values")
        elif attrs.get("role") == "enqueued":
            notes.append("enqueued point")
        if t.system_attrs.get("retry_history"):
            notes.append(f"retry of #{t.system_attrs['retry_history'][-1]}")
        if t.state == TrialState.PRUNED and attrs.get("diverged"):
            notes.append(f"diverged, pruned: {attrs['diverged']}")
        elif t.state == TrialState.PRUNED:
            notes.append(f"pruned after epoch {attrs.get('epochs')}")
        if t.state == TrialState.FAIL:
            notes.append("interrupted" if attrs.get("interrupted") else "failed")
            if t.number in retried_as:
                notes.append(f"retried as #{retried_as[t.number]}")
        rows.append({"number": t.number, "state": t.state.name.lower(), "value": t.value, "params": dict(t.params),
                     "epochs": attrs.get("epochs"), "best_epoch": attrs.get("best_epoch"), "seconds": _seconds(t),
                     "worker": f"{attrs['host']}:{attrs['pid']}" if "pid" in attrs else None,
                     "note": "; ".join(notes), "run_dir": attrs.get("run_dir")})
    return rows


def summary(sweep: Sweep, study: optuna.Study) -> dict[str, Any]:
    """Counts, best and baseline trial, wall time from the first start to the last finish, workers seen."""
    trials = study.get_trials(deepcopy=False)
    counts = {state.name.lower(): sum(t.state == state for t in trials) for state in TrialState}
    best = best_trial(study)
    baseline = next((t for t in trials if t.user_attrs.get("role") == "baseline" and t.state == TrialState.COMPLETE),
                    None)
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    durations = [s for t in trials if (s := _seconds(t)) is not None]
    gain = None
    if best is not None and baseline is not None:
        gain = (best.value - baseline.value) * (1 if sweep.spec.direction == "maximize" else -1)
    return {"name": sweep.name, "metric": sweep.spec.metric, "direction": sweep.spec.direction,
            "budget": sweep.trials, "counts": counts,
            "best": {"number": best.number, "value": best.value, "params": best.params,
                     "run_dir": best.user_attrs.get("run_dir")} if best else None,
            "baseline": {"number": baseline.number, "value": baseline.value} if baseline else None,
            "gain": gain,
            "wall_seconds": (max(ends) - min(starts)).total_seconds() if starts and ends else None,
            "trial_seconds": sum(durations) if durations else None,
            "workers": len({(t.user_attrs.get("host"), t.user_attrs.get("pid")) for t in trials
                            if "pid" in t.user_attrs}),
            "storage": display_url(sweep.storage), "config": str(sweep.spec.path)}


# -- figures ------------------------------------------------------------------------------------------
def figures(sweep: Sweep, study: optuna.Study) -> list[tuple[str, Any, str | None]]:
    """(title, plotly figure or None, why not drawn) for each of Optuna's plots."""
    metric = sweep.spec.metric
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    plots: list[tuple[str, Callable[[], Any], int]] = [
        ("Optimisation history", lambda: visualization.plot_optimization_history(study, target_name=metric), 1),
        ("Validation curves (pruned trials stop early)", lambda: visualization.plot_intermediate_values(study), 1),
        ("Parameter importances (fANOVA)", lambda: visualization.plot_param_importances(
            study, evaluator=FanovaImportanceEvaluator(seed=0), target_name=metric), 2),
        ("Parallel coordinates", lambda: visualization.plot_parallel_coordinate(study, target_name=metric), 1),
        ("Timeline (trials per worker over time)", lambda: visualization.plot_timeline(study), 1),
    ]
    out: list[tuple[str, Any, str | None]] = []
    for title, make, needed in plots:
        if len(complete) < needed:
            out.append((title, None, f"needs {needed} finished trial(s); {len(complete)} so far"))
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "experimental" notices
                fig = make()
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            out.append((title, None, f"Optuna could not draw it ({exc})"))
            continue
        fig.update_layout(template="plotly_white", height=460)
        out.append((title, fig, None))
    return out


# -- formatting ---------------------------------------------------------------------------------------
def _value(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e-2 or abs(v) >= 1e4 else f"{v:.4f}".rstrip("0").rstrip(".")
    return str(v)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _table_cells(rows: list[dict[str, Any]], keys: list[str]) -> tuple[list[str], list[list[str]]]:
    header = ["#", "state", "value", *keys, "epochs", "time", "note", "run folder"]
    body = [[str(r["number"]), r["state"], _value(r["value"]), *[_value(r["params"].get(k)) for k in keys],
             _value(r["epochs"]), _duration(r["seconds"]), r["note"], r["run_dir"] or "—"] for r in rows]
    return header, body


def summary_lines(info: dict[str, Any], final: dict[str, Any] | None) -> list[str]:
    counts = ", ".join(f"{n} {s}" for s, n in info["counts"].items() if n)
    lines = [f"Study `{info['name']}` in {info['storage']}, from {info['config']}; objective: {info['metric']} "
             f"({info['direction']}d) on the validation split (the test set is never read during the sweep).",
             f"Trials: {counts or 'none'} (budget {info['budget']} finished); workers seen: {info['workers']}.",
             f"Wall time, first trial start to last finish: {_duration(info['wall_seconds'])}; time in trials "
             f"summed: {_duration(info['trial_seconds'])}."]
    best = info["best"]
    if best:
        lines.append(f"Best: trial {best['number']}, {info['metric']} = {best['value']:.4f}, "
                     + ", ".join(f"{k} = {_value(v)}" for k, v in best["params"].items()) + ".")
    if info["baseline"]:
        gain = info["gain"]
        if best and best["number"] == info["baseline"]["number"]:
            verdict = "is the best trial: no searched point beat it"
        elif gain is not None and gain > 0:
            verdict = f"is beaten by {gain * 100:.2f} points" if info["metric"] != "val_loss" else \
                f"is beaten by {gain:.4f} lower loss"
        else:
            verdict = "is not beaten"
        lines.append(f"Baseline (the base config's own values): trial {info['baseline']['number']}, "
                     f"{info['metric']} = {info['baseline']['value']:.4f}; it {verdict}.")
    if final:
        acc = final["test_acc"]
        per_seed = ", ".join(f"{r['seed']}: {_value(r['test_acc'])}" for r in final["runs"])
        mean = f"{acc['mean']:.4f} ± {acc['std']:.4f}" if acc["mean"] is not None else "—"
        epochs = f"{final['epochs']} epoch{'' if final['epochs'] == 1 else 's'}"
        lines.append(f"Final fit of trial {final['trial']} on train+val ({epochs}), tested once per "
                     f"seed: test accuracy {mean} ({per_seed}).")
    return lines


def markdown(sweep: Sweep, study: optuna.Study, final: dict[str, Any] | None) -> str:
    info, rows = summary(sweep, study), trial_rows(study)
    header, body = _table_cells(rows, list(sweep.spec.space))
    lines = [f"# Sweep {sweep.name}", "", *[f"- {line}" for line in summary_lines(info, final)], "",
             f"Written {time.strftime('%Y-%m-%d %H:%M')}; plots: {HTML_FILE} beside this file.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def html_page(sweep: Sweep, study: optuna.Study, final: dict[str, Any] | None) -> str:
    e = html.escape
    info, rows = summary(sweep, study), trial_rows(study)
    header, body = _table_cells(rows, list(sweep.spec.space))
    parts = [f"<h1>Sweep {e(sweep.name)}</h1>", "<ul>"]
    parts += [f"<li>{e(line)}</li>" for line in summary_lines(info, final)]
    parts += [f"<li>Written {e(time.strftime('%Y-%m-%d %H:%M'))}.</li></ul>", "<h2>Trials</h2>",
              "<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr></thead><tbody>"
              + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in body)
              + "</tbody></table>"]
    for title, fig, why in figures(sweep, study):
        parts.append(f"<h2>{e(title)}</h2>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=False) if fig is not None
                     else f"<p class='note'>Not drawn: {e(why or '')}.</p>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1300px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;"
             "padding:3px 6px;text-align:left}th{background:#f3f3f3}.note{color:#666}#js-errors{color:#b00}")
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>sweep {e(sweep.name)}</title><style>{style}</style><script>{PAGE_JS}</script>"
            f"<script>{get_plotlyjs()}</script></head><body>" + "\n".join(parts)
            + "<pre id='js-errors'></pre></body></html>")


def trials_csv(sweep: Sweep, study: optuna.Study) -> str:
    keys = list(sweep.spec.space)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["number", "state", sweep.spec.metric, *keys, "epochs", "best_epoch", "seconds", "worker", "note",
                     "run_dir"])
    for r in trial_rows(study):
        writer.writerow([r["number"], r["state"], r["value"], *[r["params"].get(k) for k in keys], r["epochs"],
                         r["best_epoch"], r["seconds"], r["worker"], r["note"], r["run_dir"]])
    return out.getvalue()


def write_report(sweep: Sweep, study: optuna.Study, final: dict[str, Any] | None = None) -> dict[str, Path]:
    """``report.html``, ``report.md`` and ``trials.csv`` in the sweep's output folder."""
    return {"html": write_atomic(sweep.out_dir / HTML_FILE, html_page(sweep, study, final)),
            "markdown": write_atomic(sweep.out_dir / MARKDOWN_FILE, markdown(sweep, study, final)),
            "csv": write_atomic(sweep.out_dir / CSV_FILE, trials_csv(sweep, study))}

