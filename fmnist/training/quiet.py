"""Silence the messages Lightning prints on every run that tell a user nothing about their run.

Each one is matched exactly, so a new or different warning still shows:

- LightningCLI's "args parameter is intended to run from within Python": ``train.py``'s shorthand hands
  LightningCLI a resolved config dictionary on purpose (no argv is re-parsed), which is what it warns about.
- Lightning's advertisement for ``litlogger`` (a cloud service) at every Trainer start.
- A deprecation inside Lightning's own ``_pytree`` helper (``isinstance(treespec, LeafSpec)``), not in our code.
- "smaller than the logging interval": training metrics are logged once per epoch here, never per step.
- "Precision bf16-mixed is not supported by the model summary ... Using 32 bits instead", printed with a
  site-packages path on every bf16 run (the CPU default where bf16 is native): under mixed precision the
  weights stay float32, so the summary's 32-bit size estimate is the right one and there is nothing to say.
"""

from __future__ import annotations

import logging
import warnings

_WARNINGS = (
    r"LightningCLI's args parameter is intended to run from within Python",
    r".*isinstance\(treespec, LeafSpec\).* is deprecated",
    r"The number of training batches .* is smaller than the logging interval",
    r"Precision (bf16|16)-mixed is not supported by the model summary",
)
_LOG_MESSAGES = ("litlogger",)
_LIGHTNING_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class _DropAdvertisement(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in _LOG_MESSAGES)


_FILTER = _DropAdvertisement()


def quiet_known_noise() -> None:
    """Install the filters (idempotent; warnings filters are de-duplicated by Python)."""
    for pattern in _WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in _LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
