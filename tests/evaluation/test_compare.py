"""`evaluate.py compare`: runs, reports and K-fold folders into one table and chart."""

from __future__ import annotations

import csv
import functools
import json
import re
from pathlib import Path

import numpy as np
import pytest

from fmnist.commands import call
from fmnist.data.sources import DIGIT_CLASSES, FASHION_CLASSES
from fmnist.errors import FmnistError
from fmnist.evaluation import Predictions, write_report
from fmnist.evaluation.compare import collect, to_markdown

cli_main = functools.partial(call, "compare")


def predictions(model: str, accuracy: float, dataset: str = "fashion", n: int = 200) -> Predictions:
    """Hand-made predictions with exactly ``accuracy`` of them right."""
    labels = np.arange(n) % 10
    preds = labels.copy()
    wrong = int(round(n * (1 - accuracy)))
    preds[:wrong] = (labels[:wrong] + 1) % 10
    probs = np.full((n, 10), 0.02, dtype=np.float32)
    probs[np.arange(n), preds] = 0.82
    names = FASHION_CLASSES if dataset == "fashion" else DIGIT_CLASSES
    return Predictions(probs, labels, np.arange(n), dataset, model, names)


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, Path]:
    reports = tmp_path / "reports"
    write_report(predictions("svm", 0.90), reports / "svm", plots=False,
                 extra={"kind": "baseline", "trainable_params": 1234, "train_seconds": 60.0})
    write_report(predictions("deep", 0.10, dataset="mnist"), reports / "deep_v1_mnist-test", plots=False,
                 extra={"kind": "cnn", "trained_on": "fashion"})
    runs = tmp_path / "lightning_logs" / "deep"
    for version, acc in ((0, 0.80), (1, 0.92)):
        (runs / f"version_{version}").mkdir(parents=True)
        (runs / f"version_{version}" / "metrics.json").write_text(json.dumps({
            "model": "deep", "dataset": "fashion", "test_acc": acc, "test_macro_f1": acc - 0.01,
            "trainable_params": 94154, "wall_seconds": 300.0}))
    cv = tmp_path / "lightning_logs" / "scratch-cv"
    cv.mkdir(parents=True)
    (cv / "cv_results.json").write_text(json.dumps({
        "model": "scratch", "folds": [{"seconds": 10.0}, {"seconds": 12.0}],
        "aggregate": {"test_acc": {"mean": 0.905}, "test_macro_f1": {"mean": 0.9}}}))
    return {"reports": reports, "runs": runs, "cv": cv, "tmp": tmp_path}


def test_compare_writes_table_and_charts(sources: dict[str, Path]) -> None:
    out = sources["tmp"] / "cmp"
    args = [str(sources["runs"]), str(sources["reports"]), str(sources["cv"] / "cv_results.json"), "--out", str(out)]
    assert cli_main(args) == 0
    with (out / "comparison.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    by_name = {r["name"]: r for r in rows}
    assert [r["name"] for r in rows] == ["deep_v1", "scratch-cv", "svm", "deep_v1_mnist-test"]  # best first
    assert float(by_name["deep_v1"]["accuracy"]) == pytest.approx(0.92)  # the latest version of the run
    assert by_name["deep_v1"]["kind"] == "cnn" and float(by_name["deep_v1"]["published"]) == pytest.approx(0.913)
    assert by_name["deep_v1"]["params"] == "94154" and float(by_name["deep_v1"]["train_seconds"]) == 300.0
    svm = by_name["svm"]
    assert svm["kind"] == "baseline" and float(svm["accuracy"]) == pytest.approx(0.90)
    assert float(svm["published"]) == pytest.approx(0.87) and float(svm["benchmark"]) == pytest.approx(0.897)
    assert float(by_name["deep_v1_mnist-test"]["published"]) == pytest.approx(0.101)  # study B's cross-dataset
    assert float(by_name["scratch-cv"]["train_seconds"]) == 22.0
    md = (out / "comparison.md").read_text()
    assert "| deep_v1 | cnn | deep | fashion | test | 0.9200 | 0.9100 | 94,154 | 300.0 | 0.9130 |  |" in md
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    html = (out / "comparison.html").read_text()
    assert "deep_v1" in html and "Results at a glance" in html
    assert not re.search(r"<script[^>]*\bsrc=", html) and len(html) > 1_000_000  # plotly.js inlined: works offline


def test_report_and_run_rows_agree_on_names(sources: dict[str, Path]) -> None:
    rows = collect([str(sources["runs"] / "version_0"), str(sources["reports"] / "svm" / "metrics.json")])
    assert [(r["name"], r["kind"]) for r in rows] == [("deep_v0", "cnn"), ("svm", "baseline")]
    rows = collect([str(sources["runs"] / "version_0"), str(sources["runs"] / "version_0")])
    assert len(rows) == 1  # the same source given twice counts once
    assert "deep_v0" in to_markdown(rows)


def test_compare_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(FmnistError, match="does not exist"):
        collect([str(tmp_path / "nowhere")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FmnistError, match="holds no metrics.json"):
        collect([str(tmp_path / "empty")])
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "metrics.json").write_text('{"something": 1}')
    with pytest.raises(FmnistError, match="neither a report"):
        collect([str(tmp_path / "odd")])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "metrics.json").write_text("{not json")
    with pytest.raises(FmnistError, match="not readable JSON"):
        collect([str(tmp_path / "broken")])
