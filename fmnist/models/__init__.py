"""Model zoo: every architecture of both studies, by name. Importing registers them all."""

from fmnist.models import classic, ours, speedrun, study_a, study_b  # noqa: F401  (registration side effects)
from fmnist.models.registry import (
    ModelSpec,
    count_parameters,
    count_parameters_keras,
    create_model,
    get_spec,
    list_models,
    register_model,
)

__all__ = ["ModelSpec", "count_parameters", "count_parameters_keras", "create_model", "get_spec", "list_models",
           "register_model"]
