"""The baseline registry: name -> scikit-learn estimator, the benchmark's best parameters, published figures.

Adding a baseline is one :func:`register_baseline` call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.svm import SVC

from fmnist.errors import FmnistError
from fmnist.studies import BENCHMARK, PUBLISHED

ARTIFACTS_DIR = Path("artifacts") / "baselines"


@dataclass(frozen=True)
class BaselineSpec:
    """One classical baseline: how to build it and what the literature says it scores."""

    name: str
    description: str
    factory: Callable[..., Any]  # the sklearn estimator class whose parameters ``defaults`` / overrides set
    defaults: dict[str, Any]
    benchmark: float  # Fashion-MNIST benchmark (paper Table 3), test accuracy on Fashion-MNIST
    study_a: float | None  # study A's reported test accuracy
    one_vs_rest: bool = False  # wrap in OneVsRestClassifier (logreg: the benchmark's one-vs-rest L1 model)
    takes_n_jobs: bool = False  # the estimator itself has an n_jobs parameter
    parallel_predict: bool = False  # predict in row chunks over threads (SVC: libsvm is single-threaded)
    # Types beyond skops' safe defaults that a fitted estimator of this kind holds; a cached file asking
    # for any other type is refused (see fmnist.serialization).
    trusted_types: tuple[str, ...] = ()


BASELINES: dict[str, BaselineSpec] = {}


def register_baseline(spec: BaselineSpec) -> BaselineSpec:
    """Add a baseline to the registry: from then on the evaluator, compare and reproduce know it by name."""
    if spec.name in BASELINES:
        raise FmnistError(f"a baseline named {spec.name!r} is registered already; pick another name.")
    BASELINES[spec.name] = spec
    return spec


def unregister_baseline(name: str) -> None:
    """Remove a registered baseline (tests register throwaway ones)."""
    BASELINES.pop(name, None)


register_baseline(BaselineSpec(
    "logreg", "L1-regularised logistic regression, one-vs-rest (liblinear)", LogisticRegression,
    # ``l1_ratio=1`` is sklearn >= 1.8's spelling of ``penalty="l1"``; liblinear solves each
    # binary L1 problem exactly and the 10 problems run in parallel over n_jobs.
    {"C": 1.0, "l1_ratio": 1.0, "solver": "liblinear", "tol": 1e-3, "max_iter": 200},
    BENCHMARK["logreg"], PUBLISHED["logreg"], one_vs_rest=True))
register_baseline(BaselineSpec(
    "svm", "RBF-kernel support vector machine", SVC,
    {"C": 10.0, "kernel": "rbf", "gamma": "scale", "cache_size": 2000, "break_ties": True},
    BENCHMARK["svm"], PUBLISHED["svm"], parallel_predict=True))
register_baseline(BaselineSpec(
    "rf", "random forest", RandomForestClassifier,
    {"n_estimators": 100, "criterion": "entropy", "max_depth": 100, "random_state": 42},
    BENCHMARK["rf"], PUBLISHED["rf"], takes_n_jobs=True, trusted_types=("sklearn.tree._tree.Tree",)))
register_baseline(BaselineSpec(
    "knn", "k-nearest neighbours, Manhattan distance, distance-weighted votes", KNeighborsClassifier,
    {"n_neighbors": 5, "p": 1, "weights": "distance"},
    BENCHMARK["knn"], PUBLISHED["knn"], takes_n_jobs=True))
register_baseline(BaselineSpec(
    "mlp", "multi-layer perceptron, one hidden layer of 100 ReLUs (Adam)", MLPClassifier,
    {"activation": "relu", "hidden_layer_sizes": (100,), "random_state": 42},
    BENCHMARK["mlp"], PUBLISHED["mlp"], trusted_types=("sklearn.neural_network._stochastic_optimizers.AdamOptimizer",)))


BASELINE_NAMES = tuple(BASELINES)  # the built-in five, in the order the studies list them


def get_baseline(name: str) -> BaselineSpec:
    try:
        return BASELINES[name]
    except KeyError:
        raise FmnistError(f"Unknown baseline {name!r}; choose one of: {', '.join(BASELINES)}.") from None


def resolve_params(spec: BaselineSpec, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults updated by ``overrides``; unknown parameter names are a user error, not a crash in fit."""
    overrides = dict(overrides or {})
    valid = set(spec.factory().get_params())
    unknown = sorted(set(overrides) - valid - {"n_jobs"})
    if unknown:
        raise FmnistError(f"{spec.name} ({spec.factory.__name__}) has no parameter {', '.join(unknown)}; "
                          f"valid ones: {', '.join(sorted(valid))}.")
    overrides.pop("n_jobs", None)  # set through --n-jobs, and kept out of the cache key
    params = {**spec.defaults, **overrides}
    _check_values(spec, params, overrides)
    return params


def _check_values(spec: BaselineSpec, params: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Values scikit-learn would reject only minutes into ``fit``: checked now, with its own words."""
    estimator = spec.factory(**params)
    validate = getattr(estimator, "_validate_params", None)  # scikit-learn >= 1.2's declared constraints
    if validate is None:
        return
    try:
        validate()
    except (ValueError, TypeError) as exc:
        message = str(exc).splitlines()[0].rstrip(".")
        names = ", ".join(f"{k}={v!r}" for k, v in overrides.items()) or "the defaults"
        raise FmnistError(f"{spec.name}: {message} (from --param {names}).") from None


def build_estimator(spec: BaselineSpec, params: dict[str, Any], n_jobs: int | None = None) -> Any:
    estimator = spec.factory(**params)
    if spec.takes_n_jobs:
        estimator.set_params(n_jobs=n_jobs)
    if spec.one_vs_rest:
        estimator = OneVsRestClassifier(estimator, n_jobs=n_jobs)
    return estimator


def set_n_jobs(estimator: Any, n_jobs: int | None) -> None:
    """Apply the current ``--n-jobs`` to a reloaded estimator (it was saved with the fitting run's value)."""
    for name in ("n_jobs", "estimator__n_jobs"):
        if name in estimator.get_params():
            estimator.set_params(**{name: n_jobs})
