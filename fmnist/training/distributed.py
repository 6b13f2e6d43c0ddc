"""End the process group in order when a command's last run has finished, while every rank is still alive.

Lightning destroys the process group at exit only for NCCL. Under gloo (DDP on CPU) the group's
worker threads and rank 0's TCPStore server thread were still running when the interpreter shut down,
and a C++ ``std::thread`` destroyed while it runs aborts the process: rank 0 of a finished, successful
run exited with SIGABRT ("terminate called without an active exception") about one run in three.

The entry points call this once, after all their work: one command may train several runs in one
process group (``transfer`` pretrains its MNIST base first and then meets the other ranks at a barrier
before they read it; K folds; the reproduce table), and a group ended after the first of them would
leave the later barriers with nothing to wait on.
"""

from __future__ import annotations

import torch.distributed as dist


def end_process_group() -> None:
    """Meet every rank at a barrier, then destroy the process group; a no-op outside a distributed run.

    Call it on the success path only: a rank that stopped with an error never reaches the barrier.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.barrier()
    dist.destroy_process_group()
