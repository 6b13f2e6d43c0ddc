"""Run folders (``fmnist/runs.py``): versions, the newest trained run, checkpoints, tags, metrics.json, provenance."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

import pytest
import torch

from fmnist import runs
from fmnist.errors import FmnistError


def make(root: Path, *files: str) -> None:
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x")


def test_version_numbers_and_their_order(tmp_path: Path) -> None:
    assert runs.version_number(Path("version_0")) == 0 and runs.version_number(Path("a/version_12")) == 12
    for name in ("version_", "version_x", "old_version_3", "version_3b", "fold_1"):
        assert runs.version_number(Path(name)) is None, name
    make(tmp_path, "version_10/metrics.json", "version_2/x", "version_9/metrics.json", "version_x/metrics.json",
         "notes/metrics.json")
    assert [p.name for p in runs.versions(tmp_path)] == ["version_2", "version_9", "version_10"]  # numbers, not text
    assert [p.name for p in runs.versions(tmp_path, need="metrics.json")] == ["version_9", "version_10"]
    assert runs.latest_run(tmp_path) == tmp_path / "version_10"
    assert runs.latest_run(tmp_path, need="x") == tmp_path / "version_2"
    assert runs.latest_run(tmp_path, need="missing") is None and runs.latest_run(tmp_path / "none") is None


def test_newest_trained_and_the_checkpoint_of_a_run(tmp_path: Path) -> None:
    name = tmp_path / "deep"
    make(name, "version_0/checkpoints/best.ckpt", "version_0/checkpoints/last.ckpt", "version_1/checkpoints/last.ckpt",
         "version_2/metrics.json")  # version_2: started, no checkpoint yet
    assert runs.newest_trained(name) == name / "version_1"
    assert runs.resolve_checkpoint(name) == name / "version_1" / "checkpoints" / "last.ckpt"  # no best: last
    assert runs.resolve_checkpoint(name / "version_0") == name / "version_0" / "checkpoints" / "best.ckpt"
    ckpt = name / "version_0" / "checkpoints" / "last.ckpt"
    assert runs.newest_trained(ckpt) == ckpt and runs.resolve_checkpoint(ckpt) == ckpt  # a file as given
    assert runs.newest_trained(name / "version_0") == name / "version_0"  # a run folder as given
    assert runs.newest_trained(name / "version_2") == name / "version_2"
    untrained = tmp_path / "scratch"
    make(untrained, "version_0/metrics.json")
    assert runs.newest_trained(untrained) == untrained  # nothing trained: unchanged
    make(name, "version_7/checkpoints/last.ckpt")  # a third trained version: the newest, not the second
    assert runs.newest_trained(name) == name / "version_7"
    loose = tmp_path / "loose"  # checkpoints of its own beside version folders: it is a run itself
    make(loose, "model.ckpt", "version_0/checkpoints/last.ckpt")
    assert runs.newest_trained(loose) == loose and runs.resolve_checkpoint(loose) == loose / "model.ckpt"


def test_checkpoint_fallbacks_and_errors(tmp_path: Path) -> None:
    make(tmp_path, "flat/epoch=1.ckpt", "flat/epoch=3.ckpt", "nested/checkpoints/epoch=0.ckpt")
    assert runs.resolve_checkpoint(tmp_path / "flat") == tmp_path / "flat" / "epoch=3.ckpt"  # the last by name
    assert runs.resolve_checkpoint(tmp_path / "nested") == tmp_path / "nested" / "checkpoints" / "epoch=0.ckpt"
    (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
    with pytest.raises(FmnistError, match=r"no checkpoint \(\*\.ckpt\) in .*empty/checkpoints; did the run finish"):
        runs.resolve_checkpoint(tmp_path / "empty")
    with pytest.raises(FmnistError, match=r"missing is neither a checkpoint file nor a run folder"):
        runs.resolve_checkpoint(tmp_path / "missing")


def test_run_dir_and_tag(tmp_path: Path) -> None:
    best = tmp_path / "deep" / "version_3" / "checkpoints" / "best.ckpt"
    assert runs.run_dir_of(best) == tmp_path / "deep" / "version_3"
    assert runs.run_dir_of(tmp_path / "model.ckpt") is None
    assert runs.run_tag("deep", best, tmp_path / "deep" / "version_3") == "deep_v3"
    assert runs.run_tag("deep", best, tmp_path / "cv" / "fold_2") == "cv_fold_2"
    assert runs.run_tag("lenet5", tmp_path / "mine.ckpt", None) == "lenet5_mine"


def test_metrics_json_round_trip_and_a_half_written_file(tmp_path: Path) -> None:
    run = tmp_path / "deep" / "version_0"
    assert runs.read_metrics(run) is None  # the folder does not exist yet
    metrics = {"test_acc": 0.9182, "per_class_acc": {"Shirt": 0.74}, "epochs": 20, "seed": None}
    path = runs.write_metrics(run, metrics)
    assert path == run / "metrics.json" and runs.read_metrics(run) == metrics
    assert path.read_text() == json.dumps(metrics, indent=2) + "\n"
    assert sorted(p.name for p in run.iterdir()) == ["metrics.json"]  # no temporary file left behind
    runs.write_metrics(run, {"test_acc": 0.5})
    assert runs.read_metrics(run) == {"test_acc": 0.5}
    path.write_text('{"test_acc": 0.9')  # a writer killed half-way (not ours: ours replace atomically)
    assert runs.read_metrics(run) is None and runs.read_json(tmp_path) is None  # a folder is no JSON file


def test_git_commit_is_the_checkouts_head_and_none_outside_git(tmp_path: Path) -> None:
    package = Path(runs.__file__).resolve().parent
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=package, capture_output=True, text=True)
    assert runs.git_commit() == (head.stdout.strip() if head.returncode == 0 else None)
    assert runs.git("rev-parse", "--show-toplevel", cwd=tmp_path) is None  # not a checkout
    assert runs.git("no-such-command") is None
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert runs.git("rev-parse", "--show-toplevel", cwd=tmp_path) == str(tmp_path.resolve())
    assert runs.git("status", "--porcelain", cwd=tmp_path) is None  # empty output: None, not ""


def test_machine_description_names_what_timings_ran_on() -> None:
    text = runs.machine_description()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), None) if Path("/proc/cpuinfo").is_file() else None
    cpu = cpu or platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    assert text == (f"{os.cpu_count()} CPU cores ({cpu}), {gpu}, torch {torch.__version__}, "
                    f"Python {platform.python_version()}")


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "../up", "a\\b", "nul\0byte", "/abs"])
def test_a_run_name_that_is_not_one_folder_is_one_sentence(bad: str) -> None:
    with pytest.raises(FmnistError) as info:
        runs.check_folder_name("trainer.logger.init_args.name", bad)
    assert str(info.value) == (f"trainer.logger.init_args.name {bad!r} must be one folder name (no '/', not '.' or "
                               f"'..'): runs live in <save_dir>/<name>/<version>; choose another --logdir to put "
                               f"them elsewhere.")


@pytest.mark.parametrize("good", [None, "deep", "deep-s42", "version_3", ".hidden", "a..b", 7])
def test_one_folder_name_or_none_passes(good: object) -> None:
    runs.check_folder_name("trainer.logger.init_args.version", good)
