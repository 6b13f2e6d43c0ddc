"""A SLURM job that was requeued continues its run exactly, through the same resume as ``--resume``.

Lightning's requeue path: with ``#SBATCH --signal=USR1@90`` SLURM warns the job before its time limit;
Lightning saves ``hpc_ckpt_<n>.ckpt`` in the trainer's ``default_root_dir`` (``<logdir>/<name>``) and runs
``scontrol requeue``; SLURM stops the job (SIGTERM, which ends it with exit 143 and the resume sentence) and
starts the same batch script again with ``SLURM_RESTART_COUNT`` set. Left alone, the restarted job would load
that mid-epoch checkpoint into a *new* run folder, and a mid-epoch resume is not exact (Lightning warns as
much). So on a requeued job, the same command line continues the newest unfinished run of its name from that
run's own end-of-epoch checkpoint (what ``--resume`` picks), and Lightning's mid-epoch checkpoints are removed.
A job preempted with SIGTERM and requeued by SLURM (``#SBATCH --requeue``) continues the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

from lightning.fabric.plugins.environments import SLURMEnvironment

from fmnist.errors import FmnistError
from fmnist.runs import METRICS_FILE, versions

HPC_PATTERN = "hpc_ckpt_*.ckpt"  # Lightning's name for the checkpoint it writes before a SLURM requeue


def requeued_slurm_job() -> bool:
    """Whether this process runs in a SLURM job that was requeued (``SLURM_RESTART_COUNT`` > 0)."""
    try:
        restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
    except ValueError:
        restarts = 0
    return restarts > 0 and SLURMEnvironment.detect()


def lightning_requeue_checkpoints(root_dir: Path) -> list[Path]:
    return sorted(root_dir.glob(HPC_PATTERN))


def unfinished_run(name_dir: Path) -> Path | None:
    """The newest ``version_<k>`` of a run name with a checkpoint and no metrics.json (None when there is none)."""
    candidates = [run for run in versions(name_dir) if any((run / "checkpoints").glob("*.ckpt"))]
    if not candidates or (candidates[-1] / METRICS_FILE).exists():
        return None
    return candidates[-1]


def slurm_requeued_run(name_dir: Path, root_dir: Path) -> Path | None:
    """For a fit started without a checkpoint: the run a requeued SLURM job continues (None: start a new one).

    Lightning's mid-epoch requeue checkpoints in ``root_dir`` are removed on a requeued job; on a job that was
    not requeued they are refused, since Lightning would silently load another job's checkpoint.
    """
    if not SLURMEnvironment.detect():
        return None
    leftovers = lightning_requeue_checkpoints(root_dir)
    if not requeued_slurm_job():
        if leftovers:
            raise FmnistError(f"{leftovers[-1]} is Lightning's requeue checkpoint of an earlier SLURM job of this run "
                              f"name, which Lightning would load into this new run; resume that run with --resume, "
                              f"or delete {root_dir}/{HPC_PATTERN} to start a new one.")
        return None
    for path in leftovers:
        path.unlink(missing_ok=True)
    return unfinished_run(name_dir)
