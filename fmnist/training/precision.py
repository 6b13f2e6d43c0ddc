"""The trainer's default numeric precision: bf16 autocast on CPUs that compute bf16 natively, float32 elsewhere.

Why: on a CPU with AVX512-BF16 or AMX-BF16, oneDNN runs convolutions and BatchNorm in bf16 at about twice the
float32 rate, while autocast keeps the loss, the softmax and the optimizer's weights in float32. Study B's
``deep`` (batch 64, Adam) trains an epoch about a third faster on this project's 2-core CPU with test accuracy
unchanged over three seeds (docs/speed.md has the side-by-side measurement). CPUs without those instructions
emulate bf16 and would run slower than float32, so they keep float32, as do GPUs until bf16 has been measured on
one (``benchmarks/gpu_check.py`` trains both). A precision set by the user (``--trainer.precision 32-true``,
a config's ``trainer.precision``) is always kept. Checkpoints record the precision they were trained in, and
the evaluator scores them in it (``MIXED_PRECISION_DTYPES``), so a report reproduces the run's own test numbers.
"""

from __future__ import annotations

from pathlib import Path

import torch

CPUINFO = Path("/proc/cpuinfo")
# Linux /proc/cpuinfo flags of the instructions that compute bf16 dot products in hardware.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
CPU_DEFAULT_WITH_NATIVE_BF16 = "bf16-mixed"
FLOAT32 = "32-true"
# Lightning's mixed precisions -> the autocast dtype they compute in (the "-true" ones cast the weights instead).
MIXED_PRECISION_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def cpu_has_native_bf16(cpuinfo: Path | None = None) -> bool:
    """Whether the CPU lists a native bf16 instruction set; False where that cannot be read (non-Linux).

    ``cpuinfo``: a file in /proc/cpuinfo's format (default: this machine's).
    """
    try:
        text = (cpuinfo or CPUINFO).read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return not NATIVE_BF16_FLAGS.isdisjoint(line.split(":", 1)[1].split())
    return False


def default_precision(trains_on_cpu: bool, cpuinfo: Path | None = None) -> str:
    """The precision to use when none was asked for: ``"bf16-mixed"`` for CPU training with native bf16, else
    ``"32-true"`` (Lightning's own default), written out so that a run's config.yaml says which it was."""
    if trains_on_cpu and cpu_has_native_bf16(cpuinfo):
        return CPU_DEFAULT_WITH_NATIVE_BF16
    return FLOAT32
