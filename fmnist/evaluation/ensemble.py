"""Ensembles: average the class probabilities of several runs (Lakshminarayanan et al., NeurIPS 2017).

:func:`ensemble_predictions` turns the members' :class:`Predictions` of one split into one
``Predictions``, so an ensemble goes through the same evaluator as any single model: the full
report (accuracy, NLL, ECE, reliability), corruption accuracy and OOD detection. Members may be
any mix of runs and baselines; they must have predicted the very same samples.

``python evaluate.py ensemble RUN1 RUN2 ...`` writes the ensemble's report with a members table,
its accuracy on the corrupted test set and its OOD AUROC (``--ood``), and with ``--calibrate``
one temperature fitted on the ensemble's own validation predictions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fmnist.data.sources import load_dataset
from fmnist.errors import FmnistError
from fmnist.evaluation import ood as O
from fmnist.evaluation import robustness as R
from fmnist.evaluation.calibration import before_after, fit_temperature
from fmnist.evaluation.metrics import DEFAULT_BINS, compute_metrics
from fmnist.evaluation.predict import safe_name
from fmnist.evaluation.report import REPORTS_DIR, write_report
from fmnist.evaluation.scoring import Scorer, load_scorer
from fmnist.files import write_json_atomic
from fmnist.outputs import check_output, mark_output
from fmnist.predictions import Predictions, json_default
from fmnist.terminal import console

_SAME = ("dataset", "split", "class_names")


def ensemble_predictions(members: Sequence[Predictions], *, model: str | None = None) -> Predictions:
    """The members' mean class probabilities as one :class:`Predictions` (labels, indices and images of the first)."""
    if not members:
        raise FmnistError("an ensemble needs at least one member's predictions.")
    first = members[0]
    for other in members[1:]:
        for key in _SAME:
            if getattr(other, key) != getattr(first, key):
                raise FmnistError(f"ensemble members disagree on {key}: {getattr(first, key)!r} ({first.model}) vs "
                                  f"{getattr(other, key)!r} ({other.model}); score them on the same data.")
        if (other.probs.shape != first.probs.shape or not np.array_equal(other.labels, first.labels)
                or not np.array_equal(other.indices, first.indices)):
            raise FmnistError(f"ensemble members {first.model} and {other.model} predicted different samples "
                              f"({first.n} vs {other.n}, or other indices/labels); score them on the same split.")
    probs = np.mean([m.probs.astype(np.float64) for m in members], axis=0)
    names = [m.meta.get("run") or m.model for m in members]
    meta = {"kind": "ensemble", "run": model or _default_name(names), "members": names,
            "member_kinds": [m.meta.get("kind") for m in members],
            "member_temperatures": [m.meta.get("temperature") for m in members], "combination": "mean probability"}
    return Predictions(probs=probs.astype(np.float32), labels=first.labels, indices=first.indices,
                       dataset=first.dataset, model=model or _default_name([m.model for m in members]),
                       class_names=first.class_names, split=first.split, images=first.images,
                       output_names=first.output_names, meta=meta)


def _default_name(names: Sequence[str]) -> str:
    unique = list(dict.fromkeys(names))
    return f"ensemble-{unique[0]}x{len(names)}" if len(unique) == 1 else "ensemble-" + "+".join(names)


def ensemble_corrupted(members: Sequence[R.CorruptedSetPredictions], name: str) -> R.CorruptedSetPredictions:
    """The ensemble's predictions on the clean split and every corruption of one corrupted set."""
    first = members[0]
    if any(m.set_id != first.set_id for m in members):
        raise FmnistError("ensemble members were scored on different corrupted sets; use one seed and severity.")
    corrupted = {c: ensemble_predictions([m.corrupted[c] for m in members], model=name) for c in first.corrupted}
    return dataclasses.replace(first, clean=ensemble_predictions([m.clean for m in members], model=name),
                               corrupted=corrupted)


def _member_row(pred: Predictions, n_bins: int) -> dict[str, Any]:
    m = compute_metrics(pred, n_bins=n_bins, top_k=())
    return {"name": pred.meta.get("run") or pred.model, "model": pred.model, "kind": pred.meta.get("kind"),
            "accuracy": m["accuracy"], "nll": m["nll"], "ece": m["ece"], "temperature": pred.meta.get("temperature")}


def calibrate_ensemble(scorers: Sequence[Scorer], test: Predictions, name: str, n_bins: int) -> dict[str, Any]:
    """One temperature on the ensemble's validation predictions (members must share their validation split)."""
    vals = []
    for scorer in scorers:
        images, labels, indices = scorer.split("val")
        vals.append(scorer.predictions(images, labels, dataset=scorer.dataset, split="val", indices=indices,
                                       keep_images=False))
    try:
        val = ensemble_predictions(vals, model=name)
    except FmnistError as exc:
        raise FmnistError(f"--calibrate needs members with one validation split: {exc}") from None
    temperature = fit_temperature(val)
    return {"temperature": temperature, "fitted_on": {"split": "val", "n": val.n},
            "val": before_after(val, temperature, n_bins), "test": before_after(test, temperature, n_bins)}


def print_members(members: Sequence[dict[str, Any]], ensemble: dict[str, Any], extra: dict[str, dict]) -> None:
    from rich.table import Table

    columns = ["accuracy", "nll", "ece", *extra]
    table = Table(title="ensemble and members")
    table.add_column("model")
    for column in columns:
        table.add_column(column, justify="right")
    for row in [*members, ensemble]:
        cells = [row.get(c) if c in row else extra[c].get(row["name"]) for c in columns]
        table.add_row(row["name"], *("-" if v is None else f"{v:.4f}" for v in cells))
    console().print(table)


def evaluate_ensemble(targets: Sequence[str | Path], *, out: str | Path | None = None, dataset: str | None = None,
                      corrupted: str | None = "fashion-c", corruption_seed: int = 0,
                      ood: Sequence[str] = ("mnist",), fit_size: int = O.DEFAULT_FIT_SIZE, temperature: bool = False,
                      calibrate: bool = False, name: str | None = None, data_dir: str | None = None,
                      device: str = "cpu", n_jobs: int | None = -1, bins: int = DEFAULT_BINS,
                      plots: bool = True, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate runs (or baselines) averaged as one model; write the report and ``ensemble.json``; return its summary.

    The summary holds the members' and the ensemble's accuracy / NLL / ECE, the calibration before and
    after one temperature (``calibrate``), mean accuracy on ``corrupted`` (None: skipped) and, per
    out-set of ``ood``, the best score's AUROC; ``out`` is the report folder. ``extra`` is stored in ``ensemble.json`` as given (a caller's own bookkeeping, e.g. which seeds it averaged).
    """
    if len(targets) < 2:
        raise FmnistError("an ensemble needs at least two runs; for one model use `evaluate.py RUN`.")
    if len({str(t) for t in targets}) != len(targets):
        raise FmnistError("a run is listed twice; each member must appear once.")
    if out is not None:
        check_output(out, "ensemble", name)
    scorers = [load_scorer(t, data_dir=data_dir, device=device, temperature=temperature, n_jobs=n_jobs)
               for t in targets]
    if len({s.name for s in scorers}) != len(scorers):
        raise FmnistError(f"members must have distinct names, got {', '.join(s.name for s in scorers)}; "
                          f"pass run folders of different runs.")
    dataset = dataset or scorers[0].dataset
    data = load_dataset(dataset, data_dir or scorers[0].meta.get("data_dir"))
    images, labels = data.test_images.numpy(), data.test_labels.numpy()
    members = [s.predictions(images, labels, dataset=dataset) for s in scorers]
    name = name or _default_name([s.model for s in scorers])
    ensemble = ensemble_predictions(members, model=name)
    out = Path(out) if out else REPORTS_DIR / safe_name(name)
    check_output(out, "ensemble", name)
    rows = [_member_row(m, bins) for m in members]
    summary: dict[str, Any] = {"name": name, "members": rows, "dataset": dataset, **(extra or {})}
    if calibrate:
        summary["calibration"] = calibrate_ensemble(scorers, ensemble, name, bins)
    if corrupted:
        member_sets = [R.corrupted_predictions(s, set_name=corrupted, data_dir=data_dir, seed=corruption_seed)
                       for s in scorers]
        combined = ensemble_corrupted(member_sets, name)
        summaries = [R.robustness_summary(combined, name=name),
                     *(R.robustness_summary(m, name=s.name) for m, s in zip(member_sets, scorers, strict=True))]
        R.write_robustness(summaries, out, examples=combined, plots=plots)
        summary["robustness"] = {s["name"]: {"mean_accuracy": s["mean_accuracy"], "worst": s["worst"]}
                                 for s in summaries}
    if ood:
        result = O.detect(scorers, in_dataset=dataset, out=list(ood), fit_size=fit_size, data_dir=data_dir,
                          ensemble_name=name)
        summary["ood"] = O.write_ood(result, out, plots=plots)["best"]
        summary["ood_auroc"] = {m.name: {f"{o.name} {score}": result.auroc(m.name, o.name, score)
                                         for o in result.out_sets for score in O.SCORE_NAMES}
                                for m in result.models}
    write_report(ensemble, out, n_bins=bins, plots=plots, name=name)
    summary["ensemble"] = _member_row(ensemble, bins)
    write_json_atomic(out / "ensemble.json", summary, default=json_default)
    mark_output(out, "ensemble", name)
    return {**summary, "out": out}
