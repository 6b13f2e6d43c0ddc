"""Classical scikit-learn baselines behind the same predictions interface as the CNNs.

Each baseline is a registry entry (name -> estimator factory + the best hyperparameters of the
Fashion-MNIST benchmark, arXiv:1708.07747 Table 3). Inputs are the flattened, [0, 1]-scaled
784-d images as float32 (half the memory and faster distance/BLAS kernels than float64; libsvm
converts to float64 internally anyway). Fitted estimators are cached in skops format (no pickle) under
``artifacts/baselines/<name>-<hash>.skops`` where the hash covers the hyperparameters, the
training subset and a fingerprint of the training data, so a rerun reloads instead of refitting.

Probabilities: every baseline yields ``[N, 10]`` class probabilities whose argmax is exactly the
estimator's ``predict``. Estimators with ``predict_proba`` (logreg, rf, knn, mlp) use it. The RBF
SVC does not: ``SVC(probability=True)`` runs a 5-fold Platt calibration inside ``fit`` (about 5x
the fit time) and its probabilities can even disagree with ``predict``. Instead we take the
one-vs-rest decision function (votes plus a tie-breaking confidence), fit one temperature ``T``
by minimising the negative log-likelihood on a slice of the validation split (default 2,000
images), and use ``softmax(decision / T)``. A temperature never changes the argmax, and
``break_ties=True`` makes ``SVC.predict`` equal that argmax too.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmnist.baselines.estimator_files import load_estimator, save_estimator
from fmnist.baselines.registry import ARTIFACTS_DIR, BaselineSpec, build_estimator, get_baseline, set_n_jobs
from fmnist.data.sources import load_dataset
from fmnist.data.splits import stratified_split, stratified_subset
from fmnist.errors import FmnistError
from fmnist.files import write_json_atomic
from fmnist.serialization import read_json_capped


def flatten(images: Any) -> np.ndarray:
    """uint8 ``[N, 28, 28]`` (numpy or torch) -> float32 ``[N, 784]`` in ``[0, 1]``, as both studies do."""
    array = images.numpy() if hasattr(images, "numpy") else np.asarray(images)
    return array.reshape(len(array), -1).astype(np.float32) / np.float32(255.0)


def data_fingerprint(images: Any, labels: Any) -> str:
    """sha1 of the training pixels and labels: a cached estimator is only reused for the very same data."""
    digest = hashlib.sha1()
    for array in (images, labels):
        array = array.numpy() if hasattr(array, "numpy") else np.asarray(array)
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def cache_key(name: str, params: dict[str, Any], train_subset: int | None, fingerprint: str,
              calibration_size: int | None = None) -> str:
    payload = {"name": name, "params": {k: repr(v) for k, v in sorted(params.items())},
               "train_subset": train_subset, "data": fingerprint, "calibration_size": calibration_size}
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def n_parameters(estimator: Any) -> int | None:
    """A size comparable-ish with a network's parameter count: the numbers the fitted model stores.

    logreg/mlp: weights and biases; svm: support vectors x 784 + dual coefficients + intercepts;
    rf: tree nodes; knn: the stored training pixels.
    """
    est = estimator
    if hasattr(est, "estimators_") and hasattr(est, "label_binarizer_"):  # OneVsRestClassifier
        return int(sum(e.coef_.size + e.intercept_.size for e in est.estimators_ if hasattr(e, "coef_")))
    if hasattr(est, "coefs_"):
        return int(sum(w.size for w in est.coefs_) + sum(b.size for b in est.intercepts_))
    if hasattr(est, "support_vectors_"):
        return int(est.support_vectors_.size + est.dual_coef_.size + est.intercept_.size)
    if hasattr(est, "estimators_"):
        return int(sum(tree.tree_.node_count for tree in est.estimators_))
    if hasattr(est, "_fit_X"):
        return int(est._fit_X.size)
    return None


def _softmax(scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = scores / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(scores: np.ndarray, labels: np.ndarray) -> float:
    """The ``T`` minimising the NLL of ``softmax(scores / T)`` (temperature scaling, Guo et al. 2017)."""
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels)

    def nll(log_t: float) -> float:
        probs = _softmax(scores, float(np.exp(log_t)))
        return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean())

    result = minimize_scalar(nll, bounds=(-5.0, 5.0), method="bounded")
    return float(np.exp(result.x))


@dataclass
class FittedBaseline:
    """A fitted estimator with what is needed to reuse it: the estimator in skops format, the rest as JSON."""

    name: str
    estimator: Any
    params: dict[str, Any]
    train_subset: int | None
    n_train: int
    fit_seconds: float
    temperature: float | None = None  # set for estimators scored through decision_function + softmax
    calibration_size: int | None = None
    fingerprint: str = ""
    sklearn_version: str = ""
    created: str = ""
    path: Path | None = None
    loaded: bool = False  # reloaded from disk rather than fitted in this process
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_parameters(self) -> int | None:
        return n_parameters(self.estimator)


def _scores(estimator: Any, X: np.ndarray) -> np.ndarray:
    return estimator.decision_function(X)


def _chunked(fn: Callable[[Any, np.ndarray], np.ndarray], estimator: Any, X: np.ndarray,
             n_jobs: int | None) -> np.ndarray:
    """Run ``fn(estimator, X)`` over row chunks in threads (libsvm predicts single-threaded but releases
    the GIL, so threads parallelise it without copying the support vectors into worker processes)."""
    from joblib import Parallel, cpu_count, delayed

    workers = cpu_count() if n_jobs is None or n_jobs < 0 else n_jobs
    workers = max(1, min(workers, len(X) // 500 or 1))
    if workers == 1:
        return fn(estimator, X)
    chunks = np.array_split(X, workers)
    parts = Parallel(n_jobs=workers, prefer="threads")(delayed(fn)(estimator, chunk) for chunk in chunks)
    return np.concatenate(parts)


def _full_columns(values: np.ndarray, classes: np.ndarray, num_classes: int, fill: float) -> np.ndarray:
    """Scores over ``estimator.classes_`` -> ``[N, num_classes]`` (a class absent from training gets ``fill``)."""
    if values.ndim == 1:  # binary decision function
        values = np.stack([-values, values], axis=1)
    if len(classes) == num_classes and np.array_equal(classes, np.arange(num_classes)):
        return values
    out = np.full((len(values), num_classes), fill, dtype=values.dtype)
    out[:, classes.astype(int)] = values
    return out


def raw_scores(fitted: FittedBaseline, X: np.ndarray, n_jobs: int | None = None) -> np.ndarray:
    """Decision scores for estimators without ``predict_proba`` (SVC), parallel over row chunks."""
    spec = get_baseline(fitted.name)
    est = fitted.estimator
    return _chunked(_scores, est, X, n_jobs) if spec.parallel_predict else _scores(est, X)


def predict_proba(fitted: FittedBaseline, X: np.ndarray, num_classes: int = 10,
                  n_jobs: int | None = None) -> np.ndarray:
    """float32 ``[N, num_classes]`` probabilities whose argmax equals ``fitted.estimator.predict(X)``."""
    est = fitted.estimator
    classes = np.asarray(est.classes_)
    if hasattr(est, "predict_proba"):
        probs = est.predict_proba(X)
        return _full_columns(probs, classes, num_classes, 0.0).astype(np.float32)
    scores = raw_scores(fitted, X, n_jobs)
    scores = _full_columns(scores, classes, num_classes, float(scores.min()) - 1e3)
    return _softmax(scores.astype(np.float64), fitted.temperature or 1.0).astype(np.float32)


def _version() -> str:
    import sklearn

    return sklearn.__version__


@dataclass
class BaselineData:
    """The flattened splits a baseline sees: the 51,000-image training split (or a stratified subset
    of it), the 9,000-image validation split and the 10,000-image test set, as float32 ``[N, 784]``.
    ``*_idx`` are indices into the original train / test arrays."""

    dataset: str
    class_names: tuple[str, ...]
    X_train: np.ndarray
    y_train: np.ndarray
    train_idx: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    val_idx: np.ndarray
    val_images: Any
    X_test: np.ndarray
    y_test: np.ndarray
    test_images: Any
    fingerprint: str

    def split(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
        """(X, y, indices, uint8 images) of ``test`` or ``val``."""
        if split == "test":
            return self.X_test, self.y_test, np.arange(len(self.y_test)), self.test_images
        if split == "val":
            return self.X_val, self.y_val, self.val_idx, self.val_images
        raise FmnistError(f"Unknown split {split!r} for a baseline report; choose test or val.")

    def calibration(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """A stratified slice of the validation split (the temperature of decision-function scores)."""

        if size <= 0:
            return self.X_val[:0], self.y_val[:0]
        positions = stratified_subset(np.arange(len(self.y_val)), self.y_val, size, seed=42)
        return self.X_val[positions], self.y_val[positions]


def baseline_data(dataset: str = "fashion", data_dir: str | Path | None = None, train_subset: int | None = None,
                  val_fraction: float = 0.15, seed: int = 42) -> BaselineData:
    """The studies' preprocessing: the same stratified 85/15 split as the CNNs, /255, flatten to 784."""

    if train_subset is not None and train_subset < 20:
        raise FmnistError(f"--train-subset must be at least 20 images, got {train_subset}.")
    data = load_dataset(dataset, data_dir)
    labels = data.train_labels.numpy()
    train_idx, val_idx = stratified_split(labels, val_fraction, seed)
    if train_subset:
        train_idx = stratified_subset(train_idx, labels, train_subset, seed)
    train_images = data.train_images.numpy()[train_idx]
    val_images = data.train_images.numpy()[val_idx]
    test_images = data.test_images.numpy()
    return BaselineData(
        dataset=dataset, class_names=data.class_names,
        X_train=flatten(train_images), y_train=labels[train_idx], train_idx=train_idx,
        X_val=flatten(val_images), y_val=labels[val_idx], val_idx=val_idx, val_images=val_images,
        X_test=flatten(test_images), y_test=data.test_labels.numpy(), test_images=test_images,
        fingerprint=data_fingerprint(train_images, labels[train_idx]),
    )


def fit_or_load(name: str, params: dict[str, Any], data: BaselineData, *, train_subset: int | None = None,
                calibration_size: int = 2000, n_jobs: int | None = -1, refit: bool = False,
                artifacts_dir: str | Path = ARTIFACTS_DIR, log: Callable[[str], None] = print) -> FittedBaseline:
    """Reload ``artifacts/baselines/<name>-<hash>.skops`` (+ ``.json``) if present (and not ``refit``), else fit and save it.

    Estimators without ``predict_proba`` (SVC) also get their softmax temperature from
    ``calibration_size`` validation images; that time is recorded apart from the fit.
    """
    from joblib import parallel_config

    spec = get_baseline(name)
    needs_temperature = not hasattr(build_estimator(spec, params), "predict_proba")
    calibration_size = min(calibration_size, len(data.y_val)) if needs_temperature else 0
    key = cache_key(name, params, train_subset, data.fingerprint, calibration_size or None)
    path = Path(artifacts_dir) / f"{name}-{key}.skops"
    if path.is_file() and path.with_suffix(".json").is_file() and not refit:
        fitted = load_fitted(path, spec)
        set_n_jobs(fitted.estimator, n_jobs)
        return fitted
    estimator = build_estimator(spec, params, n_jobs)
    log(f"fitting {name} ({spec.factory.__name__}) on {len(data.y_train):,} x {data.X_train.shape[1]} ...")
    started, cpu_started = time.perf_counter(), time.process_time()
    # Threads, not processes, for OneVsRestClassifier's jobs: liblinear releases the GIL, X is not copied
    # into workers, and process_time() then counts all the work done for the fit.
    with _quiet_convergence(), parallel_config(backend="threading"):
        estimator.fit(data.X_train, data.y_train)
    fit_seconds = time.perf_counter() - started
    fit_cpu = time.process_time() - cpu_started  # this process's threads only (not joblib worker processes)
    fitted = FittedBaseline(name, estimator, dict(params), train_subset, len(data.y_train), fit_seconds,
                            calibration_size=calibration_size or None, fingerprint=data.fingerprint,
                            sklearn_version=_version(), created=time.strftime("%Y-%m-%dT%H:%M:%S"))
    if needs_temperature:
        started = time.perf_counter()
        X_cal, y_cal = data.calibration(calibration_size)
        fitted.temperature = 1.0
        if len(y_cal):
            scores = raw_scores(fitted, X_cal, n_jobs)
            scores = _full_columns(scores, np.asarray(estimator.classes_), len(data.class_names),
                                   float(scores.min()) - 1e3)
            fitted.temperature = fit_temperature(scores, y_cal)
        fitted.extra["calibration_seconds"] = time.perf_counter() - started
    fitted.extra["n_iter"] = _n_iter(estimator)
    fitted.extra["fit_cpu_seconds"] = fit_cpu
    save_fitted(fitted, path)
    return fitted


_META_FIELDS = ("name", "params", "train_subset", "n_train", "fit_seconds", "temperature", "calibration_size",
                "fingerprint", "sklearn_version", "created", "extra")


def save_fitted(fitted: FittedBaseline, path: Path) -> None:
    """``path`` (skops: the estimator) and ``path.with_suffix('.json')`` (everything else)."""
    save_estimator(fitted.estimator, path)
    meta = {f: getattr(fitted, f) for f in _META_FIELDS}
    meta["params"] = {k: list(v) if isinstance(v, tuple) else v for k, v in meta["params"].items()}
    write_json_atomic(path.with_suffix(".json"), meta, default=repr)
    fitted.path = path


def load_fitted(path: Path, spec: BaselineSpec) -> FittedBaseline:
    """A cached baseline, loaded without unpickling: skops with ``spec``'s trusted types, metadata from JSON."""
    try:
        meta = read_json_capped(path.with_suffix(".json"))
    except (OSError, ValueError) as exc:
        raise FmnistError(f"{path.with_suffix('.json')} is not readable JSON ({exc}); delete it to refit.") from None
    estimator = load_estimator(path, trusted=spec.trusted_types)
    if meta.get("sklearn_version") != _version():
        raise FmnistError(f"{path} was fitted with scikit-learn {meta.get('sklearn_version')} and this is "
                          f"{_version()}; pass --refit (or delete it) to fit it again.")
    fitted = FittedBaseline(estimator=estimator, **{f: meta.get(f) for f in _META_FIELDS if f != "extra"},
                            extra=meta.get("extra") or {})
    fitted.path, fitted.loaded = path, True
    return fitted


def _n_iter(estimator: Any) -> Any:
    if hasattr(estimator, "n_iter_"):
        value = estimator.n_iter_
        return value.tolist() if hasattr(value, "tolist") else value
    if hasattr(estimator, "estimators_") and hasattr(estimator, "label_binarizer_"):
        return [int(np.max(e.n_iter_)) for e in estimator.estimators_]
    return None


class _quiet_convergence:
    """Convergence warnings (MLP at max_iter) are recorded in the report, not sprayed over the console."""

    def __enter__(self) -> None:
        import warnings

        from sklearn.exceptions import ConvergenceWarning

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", ConvergenceWarning)

    def __exit__(self, *exc: Any) -> None:
        self._ctx.__exit__(*exc)
