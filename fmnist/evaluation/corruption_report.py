"""The corrupted-test-set report (``fmnist evaluate RUN --dataset fashion-c``): the model, its reference, mCE.

Why a module of its own: the reference that normalises mCE may be a baseline name, a run folder or an earlier
report; choosing and scoring it is the one piece of orchestration the robustness numbers need.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fmnist.evaluation import robustness as R
from fmnist.evaluation.metrics import DEFAULT_BINS
from fmnist.evaluation.predict import safe_name
from fmnist.evaluation.report import REPORTS_DIR
from fmnist.evaluation.scoring import load_scorer
from fmnist.outputs import check_output, mark_output


def corruption_report(target: str, *, dataset: str = "fashion-c", reference: str = R.DEFAULT_REFERENCE,
                      corruptions: Sequence[str] | None = None, corruption_seed: int = 0, name: str | None = None,
                      out: str | Path | None = None, data_dir: str | None = None, device: str = "cpu",
                      batch_size: int = 1000, temperature: bool = False, n_bins: int = DEFAULT_BINS,
                      plots: bool = True, baseline_options: dict[str, Any] | None = None,
                      n_jobs: int | None = -1, artifacts_dir: str | None = None) -> tuple[list[dict[str, Any]], Path]:
    """Accuracy per corruption and severity, mean, mCE vs ``reference`` (``"none"``: no mCE); write the report.

    ``target`` is a run folder, checkpoint or baseline name (``baseline_options``: its fitting options).
    Returns the summaries (the model first, then the reference's own column) and the report folder.
    """
    scorer = load_scorer(target, data_dir=data_dir, device=device, batch_size=batch_size, temperature=temperature,
                         **(baseline_options or {}))
    corrupted = dict(set_name=dataset, data_dir=data_dir, seed=corruption_seed, corruptions=corruptions)
    preds = R.corrupted_predictions(scorer, **corrupted)
    summaries, errors = [], None
    if reference != "none":
        reference_path = Path(reference)
        if reference_path.suffix == ".json" or (reference_path / R.ROBUSTNESS_FILE).is_file():
            errors = R.read_reference(reference)
        else:
            ref_scorer = load_scorer(reference, data_dir=data_dir, device=device, batch_size=batch_size,
                                     n_jobs=n_jobs, artifacts_dir=artifacts_dir)
            same = ref_scorer.name == scorer.name and not temperature
            ref_preds = preds if same else R.corrupted_predictions(ref_scorer, **corrupted)
            errors = R.reference_errors(R.robustness_summary(ref_preds, n_bins=n_bins))
            if ref_scorer.name != scorer.name:  # the reference's own column, next to the model's
                summaries.append(R.robustness_summary(ref_preds, errors, n_bins=n_bins))
    name = name or safe_name(f"{scorer.name}_{dataset}" + ("_T" if temperature else ""))
    summaries.insert(0, R.robustness_summary(preds, errors, name=scorer.name, n_bins=n_bins))
    out_dir = Path(out) if out else REPORTS_DIR / name
    check_output(out_dir, "robustness", name)
    R.write_robustness(summaries, out_dir, examples=preds, plots=plots)
    mark_output(out_dir, "robustness", name)
    return summaries, out_dir
