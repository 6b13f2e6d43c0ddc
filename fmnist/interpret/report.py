"""The explain-check summary as Markdown and as HTML (a page, and a section other pages can include).

Both are rendered from one list of blocks (heading, text, table, figure), so the two reports
always say the same thing. The HTML embeds its figures, so it can be moved or mailed alone;
:func:`html_section` is the ``<section>`` the results page can place among its own.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fmnist.files import write_text_atomic

Block = tuple[str, Any]  # ("h2" | "h3" | "p" | "table" | "figure", payload)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _verdict(sanity: Mapping[str, Any]) -> str:
    if sanity["passed"] is None:
        return "undefined (all maps blank)"
    return "passed" if sanity["passed"] else "FAILED"


def blocks(summary: Mapping[str, Any]) -> list[Block]:
    """The report's content, independent of the format."""
    methods = summary["methods"]
    out: list[Block] = [
        ("h2", f"Explanation checks: {summary['model']}"),
        ("p", f"First {summary['n']:,} {summary['split']} images of {summary['dataset']} (accuracy of the explained "
              f"network, without test-time flips: {summary['accuracy']:.2%}); maps explain the predicted class; "
              f"checkpoint {summary['checkpoint']}. "
              f"Randomisation on the first {summary['sanity_n']} images; deletion/insertion in "
              f"{summary['steps']} steps; seed {summary['seed']}; garment = pixels > {summary['garment_threshold']}."),
        ("table", (["method", "layer", "blank maps", "mass on garment / garment area", "deletion AUC / random",
                    "deletion AUC / garment-first", "insertion AUC / random",
                    "rank corr. after full randomisation", "(within the garment)",
                    f"randomisation (≤ {summary['randomisation_threshold']})"],
                   [[e["title"], e["layer"] or "— (pixels)", f"{_pct(e['maps']['blank_rate'])} "
                     f"({e['maps']['blank']:,})",
                     f"{_pct(e['maps']['garment_mass_share'])} / {_pct(e['maps']['garment_area'])}",
                     _num(e["faithfulness"]["deletion"]["ratio_random"]),
                     _num(e["faithfulness"]["deletion"]["ratio_garment"]),
                     _num(e["faithfulness"]["insertion"]["ratio_random"]),
                     _num(e["randomisation"]["final_spearman_mean"]),
                     _num(e["randomisation"].get("final_spearman_mean_in_region")), _verdict(e["randomisation"])]
                    for e in methods.values()])),
        ("p", "Deletion blacks out the most salient pixels first and re-scores: lower AUC than the random order is "
              "better (goal ≤ 0.6); 'garment-first' removes the garment's pixels in random order before the "
              "background, the score of a map that only knows where the garment is. Insertion reveals pixels on "
              "a black image: higher is better. Randomisation re-initialises the layers from the output down; "
              "maps that keep a high rank correlation with the trained model's do not depend on what it learnt. "
              "'Within the garment' ranks the garment's pixels only: pixels that are zero in every map (a black "
              "background under occlusion or integrated gradients) tie in both rankings and lift the "
              "whole-image correlation by themselves."),
        ("figure", (summary["figures"]["deletion_insertion"], "deletion and insertion curves")),
        ("figure", (summary["figures"]["randomisation"], "cascading randomisation")),
    ]
    for entry in methods.values():
        faith = entry["faithfulness"]
        out += [("h3", f"{entry['title']}" + (f" at {entry['layer']}" if entry["layer"] else "")),
                ("p", f"{entry['summary']}; {entry['seconds']:.1f} s for {summary['n']:,} maps. Blank maps: "
                      f"{_pct(entry['maps']['blank_rate_right'])} of right and "
                      f"{_pct(entry['maps']['blank_rate_wrong'])} of wrong predictions; mass on the garment is "
                      f"{_num(entry['maps']['garment_mass_over_area'])}x its area on average (1 = uniform)."),
                ("table", (["curve", "map AUC (accuracy)", "random", "garment-first", "map AUC (probability)",
                            "random", "garment-first"],
                           [[mode, *(_num(faith[mode][k]["auc_accuracy"], 3) for k in ("map", "random", "garment")),
                             *(_num(faith[mode][k]["auc_probability"], 3) for k in ("map", "random", "garment"))]
                            for mode in ("deletion", "insertion")])),
                ("table", (["step", "layers re-initialised (last one named)", "mean rank corr.", "median",
                            "within the garment", "images with ranks", "blank maps"],
                           [[str(s["step"]), str(s["layer"]), _num(s["spearman_mean"]), _num(s["spearman_median"]),
                             _num(s.get("spearman_mean_in_region")), str(s["defined"]), _pct(s["blank_rate"])]
                            for s in entry["randomisation"]["steps"]])),
                ("figure", (entry["figures"]["panels"], f"{entry['title']}: per-image panels")),
                ("figure", (entry["figures"]["class_means"], f"{entry['title']}: per-class mean maps")),
                ("figure", (entry["figures"]["randomisation_examples"], f"{entry['title']}: randomisation"))]
    return out


def markdown(summary: Mapping[str, Any]) -> str:
    """The report as Markdown (figures linked by file name, next to the report)."""
    lines: list[str] = []
    for kind, payload in blocks(summary):
        if kind in ("h2", "h3"):
            lines += [f"{'#' * (2 if kind == 'h2' else 3)} {payload}", ""]
        elif kind == "p":
            lines += [payload, ""]
        elif kind == "table":
            header, rows = payload
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
            lines.append("")
        elif kind == "figure":
            name, alt = payload
            lines += [f"![{alt}]({name})", ""]
    return "\n".join(lines)


def html_section(summary: Mapping[str, Any], folder: Path | None = None,
                 figures: Mapping[str, str] | None = None) -> str:
    """The report as one ``<section>``: figures from ``folder`` embedded as data URIs, or, where ``figures`` maps
    a figure's file name to a link, linked (a page committed beside its figures); others are left out."""
    e = html.escape
    parts = ["<section class='explain-check'>"]
    for kind, payload in blocks(summary):
        if kind in ("h2", "h3", "p"):
            parts.append(f"<{kind}>{e(payload)}</{kind}>")
        elif kind == "table":
            header, rows = payload
            parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>"
                         + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
                         + "</table>")
        elif kind == "figure":
            name, alt = payload
            if figures is not None:
                if name in figures:
                    parts.append(f"<figure><img alt='{e(alt)}' src='{e(figures[name])}'>"
                                 f"<figcaption>{e(alt)}</figcaption></figure>")
                continue
            path = folder / name if folder is not None else None
            if path is not None and path.is_file():
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                parts.append(f"<figure><img alt='{e(alt)}' src='data:image/png;base64,{data}'>"
                             f"<figcaption>{e(alt)}</figcaption></figure>")
    parts.append("</section>")
    return "\n".join(parts)


def write_reports(summary: Mapping[str, Any], folder: Path) -> tuple[Path, Path]:
    """``explain_check.md`` and a self-contained ``explain_check.html`` in ``folder``."""
    md = folder / "explain_check.md"
    write_text_atomic(md, markdown(summary))
    style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;"
             "padding:4px 8px;text-align:left}th{background:#f3f3f3}img{max-width:100%}")
    page = folder / "explain_check.html"
    write_text_atomic(page, f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>explain-check: "
                    f"{html.escape(str(summary['model']))}</title><style>{style}</style></head><body>"
                    f"{html_section(summary, folder)}</body></html>\n")
    return md, page
