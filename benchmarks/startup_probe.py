"""A Lightning callback for ``benchmarks/startup.py``: print the wall clock at the first training step, then end.

Loaded by class path (``--trainer.callbacks+=startup_probe.FirstStep`` with ``benchmarks/`` on ``PYTHONPATH``);
it is not part of the package, and a normal run never sees it.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import lightning as L


class FirstStep(L.Callback):
    """At the first ``on_train_batch_start``: print ``FMNIST_FIRST_STEP <time.time()>`` and exit at once."""

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        print(f"FMNIST_FIRST_STEP {time.time():.6f}", flush=True)
        sys.stderr.flush()
        os._exit(0)  # nothing after the first step is measured
