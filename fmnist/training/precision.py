"""The trainer's default numeric precision: bf16 autocast on CPUs with AMX (bf16 matrix units), float32 elsewhere.

Why: measured on this project's 2-core machines, bf16 autocast pays only where the CPU multiplies bf16 matrices
in AMX tiles. On an Intel CPU with AMX-BF16 (2026-12-03), study B's ``deep`` (batch 64, Adam) trained an epoch
in 8.0-8.3 s against 12.0-12.3 s in float32, test accuracy unchanged over three seeds. On an Intel Xeon that
lists AVX512-BF16 but exposes no AMX (2026-12-07, docs/speed.md), bf16 did not pay: ``deep`` 19.8 / 18.0 s an
epoch against 17.7 / 23.9 s in float32 (no faster), and the ``speedrun`` recipe's three epochs took 26.1 / 33.2 s
against 17.9 / 22.9 s in float32 (1.45x slower), side by side in one quiet window. CPUs without any bf16
instructions emulate it (12.6x slower per step on a Zen 3, measured the same day). So bf16 is the default only
with ``amx_bf16``; everything else, GPUs included until bf16 has been measured on one (``benchmarks/gpu_check.py``
trains both), trains in float32. A precision set by the user (``--trainer.precision bf16-mixed``, a config's
``trainer.precision``) is always kept. Checkpoints record the precision they were trained in, and the evaluator
scores them in it (``MIXED_PRECISION_DTYPES``), so a report reproduces the run's own test numbers.
"""

from __future__ import annotations

from pathlib import Path

import torch

CPUINFO = Path("/proc/cpuinfo")
# Linux /proc/cpuinfo flag of the bf16 matrix units (AMX tiles) with which bf16 autocast was measured to pay.
# avx512_bf16 alone (dot-product instructions, no tiles) was measured not to: see the module's docstring.
BF16_MATRIX_FLAGS = frozenset({"amx_bf16"})
CPU_DEFAULT_WITH_BF16_MATRIX_UNITS = "bf16-mixed"
FLOAT32 = "32-true"
# Lightning's mixed precisions -> the autocast dtype they compute in (the "-true" ones cast the weights instead).
MIXED_PRECISION_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def cpu_has_bf16_matrix_units(cpuinfo: Path | None = None) -> bool:
    """Whether the CPU lists AMX-BF16; False where that cannot be read (non-Linux).

    ``cpuinfo``: a file in /proc/cpuinfo's format (default: this machine's).
    """
    try:
        text = (cpuinfo or CPUINFO).read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return not BF16_MATRIX_FLAGS.isdisjoint(line.split(":", 1)[1].split())
    return False


def default_precision(trains_on_cpu: bool, cpuinfo: Path | None = None) -> str:
    """The precision to use when none was asked for: ``"bf16-mixed"`` for CPU training with AMX-BF16, else
    ``"32-true"`` (Lightning's own default), written out so that a run's config.yaml says which it was."""
    if trains_on_cpu and cpu_has_bf16_matrix_units(cpuinfo):
        return CPU_DEFAULT_WITH_BF16_MATRIX_UNITS
    return FLOAT32
