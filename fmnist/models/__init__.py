"""Model zoo: every architecture of both studies, by name. Importing registers them all."""

from fmnist.catalog import CATALOG, ModelInfo, list_models, model_info, models_table
from fmnist.models import classic, ours, speedrun, study_a, study_b  # noqa: F401  (registration side effects)
from fmnist.models.registry import (
    ModelSpec,
    builders,
    count_parameters,
    count_parameters_keras,
    create_model,
    get_spec,
    register_model,
)

__all__ = ["CATALOG", "ModelInfo", "ModelSpec", "builders", "count_parameters", "count_parameters_keras",
           "create_model", "get_spec", "list_models", "model_info", "models_table", "register_model"]
