"""Adding a dataset or a baseline is one registry entry: a throwaway of each runs through the evaluator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_synthetic_dataset
from sklearn.naive_bayes import GaussianNB
from torch import nn

from fmnist.baselines import BaselineSpec, register_baseline, unregister_baseline
from fmnist.catalog import CATALOG, add_model_info
from fmnist.commands.shims import evaluate_py as evaluate_main
from fmnist.data.sources import DatasetInfo, register_dataset, unregister_dataset
from fmnist.errors import FmnistError
from fmnist.evaluation import evaluate
from fmnist.models import create_model, get_spec
from fmnist.models.registry import register_model

SHAPES = ("circle", "square", "cross", "ring", "dot", "bar", "slash", "tee", "ell", "zig")


@pytest.fixture
def shapes_dataset(tmp_path: Path):
    """A dataset this package never heard of, registered for the test only."""
    root = tmp_path / "data"
    write_synthetic_dataset(root, "fashion")  # any 28x28 IDX files will do; moved under the new folder's name
    (root / "FashionMNIST").rename(root / "Shapes")
    info = register_dataset(DatasetInfo("shapes", "Shapes", SHAPES))
    yield info, root
    unregister_dataset("shapes")


@pytest.fixture
def naive_bayes():
    spec = register_baseline(BaselineSpec("nb", "Gaussian naive Bayes", GaussianNB, {"var_smoothing": 1e-9},
                                          benchmark=0.511, study_a=None))
    yield spec
    unregister_baseline("nb")


def test_a_new_dataset_and_baseline_run_through_the_evaluator(shapes_dataset, naive_bayes, tmp_path: Path) -> None:
    _, root = shapes_dataset
    pred = evaluate("nb", "shapes", data_dir=str(root), train_subset=300, n_jobs=1,
                    artifacts_dir=tmp_path / "art", log=lambda _: None)
    assert pred.dataset == "shapes" and pred.model == "nb" and pred.class_names == SHAPES and pred.n == 100
    assert pred.correct.mean() > 0.5  # the synthetic classes are separable
    out = tmp_path / "report"
    assert evaluate_main(["--baseline", "nb", "--dataset", "shapes", "--data-dir", str(root), "--train-subset",
                          "300", "--n-jobs", "1", "--artifacts", str(tmp_path / "art"), "--out", str(out),
                          "--no-plots"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "shapes" and metrics["model"] == "nb" and metrics["accuracy"] == pred.correct.mean()


def test_names_must_be_unique(naive_bayes) -> None:
    with pytest.raises(FmnistError, match="registered already"):
        register_baseline(naive_bayes)
    with pytest.raises(FmnistError, match="registered already"):
        register_dataset(DatasetInfo("fashion", "X", SHAPES))
    with pytest.raises(FmnistError, match="a model named 'deep' is registered already; pick another name."):
        register_model("deep")(lambda num_classes=10: None)
    with pytest.raises(FmnistError, match="a model named 'deep' is registered already; pick another name."):
        add_model_info(CATALOG["deep"])


def test_model_aliases_are_registry_entries_not_copies() -> None:
    assert get_spec("cnn3").builder is get_spec("deep").builder and get_spec("cnn3").alias_of == "deep"
    assert get_spec("cnn2").builder is get_spec("scratch").builder
    # the alias takes its target's options (cnn3 used to refuse deep's)
    assert isinstance(create_model("cnn3", batchnorm=False, dropout=0.0).classifier.dropout, nn.Dropout)
