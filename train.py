#!/usr/bin/env python
"""Train (and test) a model: ``python train.py --model deep [--gpus 1]`` or ``python train.py fit --config ...``.

The same as ``fmnist train ...`` (:mod:`fmnist.commands.train`); this file stays so the old spelling works.
"""

import signal
import sys


def _stopped_while_starting(signum: int, frame: object) -> None:
    """SIGTERM during the imports (seconds): one sentence and 143, not a silent kill; the verb takes over after."""
    print("stopped by SIGTERM while starting, before anything was written: run the same command again.",
          file=sys.stderr)
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _stopped_while_starting)
    try:
        from fmnist.commands.shims import train_py
    except KeyboardInterrupt:
        print("stopped by SIGINT while starting, before anything was written: run the same command again.",
              file=sys.stderr)
        sys.exit(130)
    sys.exit(train_py())
