"""Keep freed CPU memory inside the process, so a training step does not page-fault on every activation.

glibc's ``malloc`` serves large blocks (above ``M_MMAP_THRESHOLD``, at most 32 MiB) with a fresh
``mmap`` and gives heap memory above ``M_TRIM_THRESHOLD`` back to the kernel when it is freed. A
CPU training step allocates and frees the same multi-megabyte activations and gradients hundreds of
times an epoch, so each one comes back as untouched pages: every write to it page-faults and the
kernel zeroes the page first. For ``deep`` at batch 64 this was a third of the step: the
max-pool backward's ``fill_`` of a 5.5 MB gradient ran at ~4 GB/s.

Raising both thresholds makes freed blocks stay on the heap for the next step, as a caching
allocator would (PyTorch's CUDA allocator does this on the GPU; TensorFlow's CPU allocator does it
too). Measured here on ``deep``'s training step (2 threads): 21-24 ms -> 17-19 ms; the batch-256
evaluation pass 47-50 ms -> 19-20 ms. The price: the process keeps its peak heap size until it ends.

Only glibc has these knobs; on other C libraries (macOS, musl, Windows) this is a no-op.
"""

from __future__ import annotations

import ctypes
import sys

# mallopt parameter numbers, from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's largest accepted value (HEAP_MAX_SIZE / 2 on 64-bit)
TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024
TOP_PAD_BYTES = 64 * 1024 * 1024

_retained = False


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018  (only glibc exports this; musl's mallopt is a stub)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def retain_freed_memory(libc: ctypes.CDLL | None = None) -> bool:
    """Tell glibc to keep freed blocks for reuse (idempotent); False where the C library has no such knobs.

    ``libc`` is for tests; by default the process's own C library is used.
    """
    global _retained
    if _retained:
        return True
    libc = libc if libc is not None else _glibc()
    if libc is None:
        return False
    # Setting a threshold by hand also switches off glibc's own (adaptive) mmap threshold, so all three are set.
    ok = all(libc.mallopt(param, value) == 1 for param, value in (
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
        (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
        (M_TOP_PAD, TOP_PAD_BYTES),
    ))
    _retained = ok
    return ok


def is_retaining() -> bool:
    """Whether :func:`retain_freed_memory` has taken effect in this process."""
    return _retained
