"""Output folders: which folder a command may write its report into (fmnist.outputs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fmnist.errors import FmnistError
from fmnist.outputs import MARKER, check_output, mark_output


def _write(folder: Path, files: dict[str, dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_text(json.dumps(content))
    return folder


def test_a_new_or_empty_folder_is_free_and_nothing_is_written_by_the_check(tmp_path: Path) -> None:
    check_output(tmp_path / "new", "evaluate", "x")
    check_output(tmp_path, "compare")
    assert not (tmp_path / "new").exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("files", [{"hparams.yaml": {}}, {"cv_config.json": {}},
                                   {"metrics.json": {"test_acc": 0.9, "best_checkpoint": "x/best.ckpt"}},
                                   {"metrics.json": {"status": "diverged"}}],
                         ids=["hparams", "k-fold", "run-metrics", "diverged-run"])
def test_training_folders_are_refused(files: dict, tmp_path: Path) -> None:
    folder = _write(tmp_path / "run", files)
    with pytest.raises(FmnistError, match="is a training run folder"):
        check_output(folder, "evaluate")


def test_reports_written_before_markers_are_recognised_by_their_files(tmp_path: Path) -> None:
    ensemble = _write(tmp_path / "ens", {"ensemble.json": {"name": "deep-x3"},
                                         "metrics.json": {"name": "deep-x3", "confusion_matrix": [[1]]}})
    check_output(ensemble, "ensemble", "deep-x3")  # its own report: refreshed
    with pytest.raises(FmnistError, match="holds a report of `evaluate.py ensemble`"):
        check_output(ensemble, "evaluate", "deep-x3")
    report = _write(tmp_path / "rep", {"metrics.json": {"name": "deep_v0_fashion-test", "confusion_matrix": [[1]]}})
    check_output(report, "evaluate", "deep_v0_fashion-test")
    with pytest.raises(FmnistError, match="holds the report 'deep_v0_fashion-test', not 'deep_v1_fashion-test'"):
        check_output(report, "evaluate", "deep_v1_fashion-test")


def test_the_marker_names_the_command_and_report(tmp_path: Path) -> None:
    mark_output(tmp_path, "ood", None)
    assert json.loads((tmp_path / MARKER).read_text()) == {"command": "ood", "name": None}
    check_output(tmp_path, "ood")
    with pytest.raises(FmnistError, match="holds a report of `evaluate.py ood`"):
        check_output(tmp_path, "calibrate")
