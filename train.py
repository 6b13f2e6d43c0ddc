#!/usr/bin/env python
"""Train (and test) a model: ``python train.py --model deep [--gpus 1]`` or ``python train.py fit --config ...``."""

import sys

from fmnist.training.cli import main

if __name__ == "__main__":
    sys.exit(main())
