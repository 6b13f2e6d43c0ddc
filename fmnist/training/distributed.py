"""End a finished run's process group in order, while every rank is still alive.

Lightning destroys the process group at exit only for NCCL. Under gloo (DDP on CPU) the group's
worker threads and rank 0's TCPStore server thread were still running when the interpreter shut down,
and a C++ ``std::thread`` destroyed while it runs aborts the process: rank 0 of a finished, successful
run exited with SIGABRT ("terminate called without an active exception") about one run in three.
"""

from __future__ import annotations

import lightning as L
import torch.distributed as dist


def end_process_group(trainer: L.Trainer | None) -> None:
    """Meet every rank at a barrier, then destroy the process group; a no-op outside a distributed run.

    Skipped for an interrupted run: a rank that was stopped would never reach the barrier.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    if trainer is not None and trainer.interrupted:
        return
    dist.barrier()
    dist.destroy_process_group()
