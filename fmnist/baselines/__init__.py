"""Classical scikit-learn baselines behind the same predictions interface as the CNNs (registry + fitting)."""

from fmnist.baselines.fitting import (
    BaselineData,
    FittedBaseline,
    baseline_data,
    cache_key,
    data_fingerprint,
    fit_or_load,
    fit_temperature,
    flatten,
    load_fitted,
    n_parameters,
    predict_proba,
    raw_scores,
    save_fitted,
)
from fmnist.baselines.registry import (
    ARTIFACTS_DIR,
    BASELINE_NAMES,
    BASELINES,
    BaselineSpec,
    build_estimator,
    get_baseline,
    register_baseline,
    resolve_params,
    set_n_jobs,
    unregister_baseline,
)

__all__ = [
    "ARTIFACTS_DIR", "BASELINES", "BASELINE_NAMES", "BaselineData", "BaselineSpec", "FittedBaseline", "baseline_data",
    "build_estimator", "cache_key", "data_fingerprint", "fit_or_load", "fit_temperature", "flatten", "get_baseline",
    "load_fitted", "n_parameters", "predict_proba", "raw_scores", "register_baseline",
    "resolve_params", "save_fitted", "set_n_jobs", "unregister_baseline",
]
