"""The ``fmnist`` console script: one table of verbs, help at once, shims that answer the same as the verbs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fmnist.commands import VERBS, help_text, main
from fmnist.commands import names as N
from fmnist.commands.shims import evaluate_py, module_main, train_py
from fmnist.data.corrupted_sets import CORRUPTED_SETS
from fmnist.data.corruptions import CORRUPTIONS
from fmnist.data.sources import DATASETS
from fmnist.evaluation import metrics, ood, robustness
from fmnist.interpret import check, faithfulness, methods
from fmnist.photos import fetch, iiif_json, inputs, preprocess
from fmnist.sweep import storage

REPO = Path(__file__).resolve().parents[2]
LIGHT = ("torch", "lightning", "captum", "sklearn", "optuna", "plotly", "cv2", "matplotlib", "scipy")


def fmnist(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fmnist.commands", *args], capture_output=True, text=True,
                          cwd=cwd or REPO, timeout=600)


def test_help_lists_every_verb_of_the_table() -> None:
    done = fmnist("--help")
    assert done.returncode == 0
    for verb in VERBS:
        assert f"  {verb.name} " in done.stdout and verb.summary in done.stdout
    assert done.stdout.strip() == help_text()


def test_no_verb_is_usage_and_2_and_an_unknown_verb_is_one_sentence(capsys: pytest.CaptureFixture) -> None:
    assert main([]) == 2
    assert main(["trian"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: 'trian' is not an fmnist verb; choose one of: train,") and "\n" not in err


def test_every_verb_answers_help_without_a_heavy_library() -> None:
    """Each verb's --help exits 0, in one process that never imports torch, Lightning, Captum, ... (fast)."""
    script = ("import sys\nfrom fmnist.commands import VERBS, parse\nfor verb in VERBS:\n"
              "    try:\n        parse(verb, ['--help'], f'fmnist {verb.name}')\n"
              "    except SystemExit as exc:\n        assert exc.code == 0, (verb.name, exc.code)\n"
              "    else:\n        raise AssertionError(verb.name)\n"
              f"heavy = [m for m in {LIGHT!r} if m in sys.modules]\nassert not heavy, heavy\nprint('ok')")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0 and done.stdout.count("usage:") == len(VERBS), done.stderr[-2000:]


@pytest.mark.parametrize("verb", [v.name for v in VERBS])
def test_each_verb_help_exits_0(verb: str) -> None:
    done = fmnist(verb, "--help")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith(f"usage: fmnist {verb}")


def test_models_is_train_py_list_models(capsys: pytest.CaptureFixture) -> None:
    assert main(["models"]) == 0
    verb = capsys.readouterr().out
    assert train_py(["--list-models"]) == 0
    assert capsys.readouterr().out == verb and "speedrun" in verb
    shim = subprocess.run([sys.executable, str(REPO / "train.py"), "--list-models"], capture_output=True, text=True,
                          cwd=REPO, timeout=600)
    assert shim.returncode == 0 and shim.stdout == verb


def test_stats_is_the_same_through_evaluate_py(synthetic_data_dir: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["stats", "--dataset", "fashion", "--data-dir", synthetic_data_dir]) == 0
    verb = capsys.readouterr().out
    assert evaluate_py(["stats", "--dataset", "fashion", "--data-dir", synthetic_data_dir]) == 0
    assert capsys.readouterr().out == verb and "600" in verb


@pytest.mark.parametrize(("verb_line", "shim"), [
    (["evaluate", "no/such/run"], lambda: evaluate_py(["no/such/run"])),
    (["train", "--model", "nope"], lambda: train_py(["--model", "nope"])),
    (["sweep", "--config", "x.yaml", "--trials", "many"],
     lambda: module_main("sweep", "fmnist sweep", ["--config", "x.yaml", "--trials", "many"])),
    (["reproduce", "--gpus", "-1"], lambda: module_main("reproduce", "fmnist reproduce", ["--gpus", "-1"])),
])
def test_errors_are_one_sentence_and_2_in_both_spellings(verb_line: list[str], shim, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(verb_line) == 2
    verb = capsys.readouterr().err
    assert shim() == 2
    assert capsys.readouterr().err == verb
    assert verb.startswith("error: ") and verb.count("\n") == 1


def test_python_m_shims_keep_their_names_in_usage() -> None:
    for module, prog in (("fmnist.sweep", "python -m fmnist.sweep"), ("fmnist.reproduce", "python -m fmnist.reproduce"),
                         ("fmnist.reproduce.html_check", "python -m fmnist.reproduce.html_check")):
        done = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=REPO,
                              timeout=600)
        assert done.returncode == 0 and done.stdout.startswith(f"usage: {prog}"), (module, done.stderr[-1000:])


def test_the_names_the_options_offer_are_the_registries() -> None:
    """fmnist/commands/names.py mirrors the domain modules (kept light for --help): they must not drift."""
    assert tuple(DATASETS) == N.DATASETS and tuple(CORRUPTED_SETS) == N.CORRUPTED_SETS
    assert tuple(CORRUPTIONS) == N.CORRUPTIONS
    assert tuple(methods.METHODS) == N.METHODS and N.DEFAULT_METHOD == methods.DEFAULT_METHOD
    assert (N.CHECK_N, N.CHECK_SANITY_N, N.CHECK_OUT_FOLDER) == (check.DEFAULT_N, check.DEFAULT_SANITY_N,
                                                                 check.OUT_FOLDER)
    assert N.DELETION_STEPS == faithfulness.DELETION_STEPS
    assert (N.DEFAULT_BINS, N.DEFAULT_LOW_CONFIDENCE, N.DEFAULT_TOP_K) == (
        metrics.DEFAULT_BINS, metrics.DEFAULT_LOW_CONFIDENCE, metrics.DEFAULT_TOP_K)
    assert N.DEFAULT_REFERENCE == robustness.DEFAULT_REFERENCE
    assert (N.OOD_SCORES, N.OOD_FIT_SIZE, N.OOD_OUT_SIZE) == (ood.SCORE_NAMES, ood.DEFAULT_FIT_SIZE,
                                                              ood.DEFAULT_OUT_SIZE)
    assert tuple(sorted(preprocess.PREPROCESSORS)) == N.PREPROCESSORS
    assert N.RECOMMENDED_PREPROCESS == preprocess.RECOMMENDED
    assert (N.PHOTO_TIMEOUT, N.PHOTO_MAX_BYTES) == (fetch.DEFAULT_TIMEOUT, fetch.DEFAULT_MAX_BYTES)
    assert (N.PHOTO_MAX_PIXELS, N.PHOTO_MAX_IMAGES) == (inputs.DEFAULT_MAX_PIXELS, inputs.DEFAULT_MAX_IMAGES)
    assert N.IIIF_MAX_JSON_BYTES == iiif_json.DEFAULT_MAX_JSON_BYTES
    assert N.SWEEP_HEARTBEAT == storage.DEFAULT_HEARTBEAT
