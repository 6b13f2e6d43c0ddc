"""Page faults of ``deep``'s training step before and after :func:`retain_freed_memory` (glibc only).

Moved out of the test suite: how many minor page faults a step takes depends on glibc's adaptive
thresholds and on what else the machine runs, so a fixed threshold in a test either flaked on a
shared 2-core machine or had to be loose enough to prove little. This prints the numbers and their
ratio instead; the tests keep what is exact (which ``mallopt`` settings are made, once, and the
Classifier's switch). Each measurement runs in a fresh process, so an earlier one cannot have grown
the heap already.

    python benchmarks/page_faults.py            # one fresh process
    python benchmarks/page_faults.py --repeat 5

Measured 2026-12-07 on this project's 2-core machine (loaded: a training job beside it): 71,563 faults over
15 steps before, 0 in the quietest 5 steps after (the old test asserted ``before > 1000`` and
``after < before / 20``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import resource, torch
    from fmnist.training.cpu_tuning import retain_freed_memory
    from fmnist.models import create_model
    torch.set_num_threads(1)
    model = create_model("deep").to(memory_format=torch.channels_last)
    x = torch.rand(64, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (64,))
    def faults(steps=5):
        start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(steps):
            model.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start
    faults()
    before = sum(faults() for _ in range(3))
    assert retain_freed_memory(), "mallopt refused a setting"
    faults()
    # glibc's adaptive thresholds make single windows noisy and the heap may still grow once a few steps
    # later: three windows before against the quietest of four after.
    print(before, min(faults() for _ in range(4)))
""")


def measure() -> tuple[int, int]:
    """(faults over 15 steps before, fewest over 5 steps after) in a fresh process."""
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    before, after = map(int, out.stdout.split())
    return before, after


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="fresh processes to measure (default 1)")
    args = parser.parse_args(argv)
    print("run  faults before (15 steps)  faults after (quietest 5 steps)  before/after")
    for run in range(1, args.repeat + 1):
        before, after = measure()
        ratio = f"{before / after:.0f}x" if after else "no faults after"
        print(f"{run:>3}  {before:>24,}  {after:>32,}  {ratio:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
