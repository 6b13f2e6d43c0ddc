"""CPU tuning: keep freed memory in the process, and pick the faster thread count per epoch.

Allocator: keep freed CPU memory inside the process, so a training step does not page-fault on every
activation.

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
import statistics
import sys
import time

import torch

from fmnist.errors import FmnistError

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


class CpuThreadPicker:
    """Per training epoch on the CPU, time a few batches with torch's thread count and with one thread; keep the faster.

    PyTorch's OpenMP threads busy-wait between operations. On a CPU shared with other jobs a
    waiting thread burns the time slice its partner needs, and two threads then run several
    times *slower* than one (on this project's 2-core machine: 3-10x slower under load, 1.4x
    faster when idle). The choice changes speed only: the same computation (up to the order of
    floating-point sums).
    """

    probe_batches = 5  # per candidate; the first batch after a switch is not timed

    def __init__(self, setting: int | str | None) -> None:
        if setting not in (None, "auto") and not (isinstance(setting, int) and setting > 0):
            raise FmnistError(f"cpu_threads must be 'auto', a positive integer or None, got {setting!r}.")
        self.setting = setting
        self.original: int | None = None
        self.candidates: list[int] = []
        self.plan: list[int] = []
        self.times: dict[int, list[float]] = {}
        self.choices: list[int] = []  # threads used for each epoch after its probe
        self._started: float | None = None

    def fit_start(self, on_cpu: bool) -> None:
        if not on_cpu or self.setting is None:
            return
        self.original = torch.get_num_threads()
        if self.setting == "auto":
            self.candidates = [1, self.original] if self.original > 1 else []
        elif self.setting != self.original:
            torch.set_num_threads(int(self.setting))

    def fit_end(self) -> None:
        if self.original is not None and torch.get_num_threads() != self.original:
            torch.set_num_threads(self.original)
        self.original, self.candidates, self.plan = None, [], []

    def epoch_start(self, num_batches: float) -> None:
        plan = [n for n in self.candidates for _ in range(self.probe_batches)]
        self.plan = plan if num_batches >= 4 * len(plan) else []  # short epochs (tests, quick runs): no probe
        self.times = {n: [] for n in self.candidates}

    def batch_start(self, batch_idx: int) -> None:
        if batch_idx < len(self.plan):
            if torch.get_num_threads() != self.plan[batch_idx]:
                torch.set_num_threads(self.plan[batch_idx])
            self._started = time.perf_counter()
        elif batch_idx == len(self.plan) and self.plan:
            timed = {n: statistics.median(t) for n, t in self.times.items() if t}
            best = min(timed, key=timed.get) if timed else self.original
            torch.set_num_threads(best)
            self.choices.append(best)

    def batch_end(self, batch_idx: int) -> None:
        # The first batch after a switch is not timed (the thread pool resizes).
        if self._started is not None and batch_idx < len(self.plan) and batch_idx % self.probe_batches:
            threads, seconds = self.plan[batch_idx], time.perf_counter() - self._started
            self.times[threads].append(seconds)
            single = self.times.get(1)
            if threads != 1 and single and seconds > 2 * statistics.median(single):
                self.plan = self.plan[:batch_idx + 1]  # clearly slower (contended CPU): stop probing it
        self._started = None
