"""Training: the LightningModule, callbacks, CPU tuning, the LightningCLI, K-fold CV and the ``fit`` API."""

from fmnist.training.api import Run, fit, resolve_config

__all__ = ["Run", "fit", "resolve_config"]
