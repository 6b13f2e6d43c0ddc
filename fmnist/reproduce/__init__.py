"""Re-run both studies' experiments and write the results page: ``python -m fmnist.reproduce``."""

from fmnist.reproduce.experiments import BUDGETS, EXPERIMENTS, Budget, Experiment
from fmnist.reproduce.run import reproduce

__all__ = ["BUDGETS", "EXPERIMENTS", "Budget", "Experiment", "reproduce"]
