"""``fmnist explain-check RUN`` (= ``python evaluate.py explain-check``): options."""

from __future__ import annotations

import argparse
from pathlib import Path

from fmnist.commands import names as N


def build_parser(prog: str = "fmnist explain-check") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Sanity and faithfulness checks of explanation maps: blank maps, mass on the garment, "
                    "deletion/insertion vs random order, cascading model randomisation, per-class mean maps.")
    parser.add_argument("checkpoint", metavar="RUN_DIR_OR_CKPT", help="run folder or .ckpt file")
    parser.add_argument("--method", nargs="+", default=[N.DEFAULT_METHOD], metavar="M",
                        help=f"one or more of {', '.join(N.METHODS)}, or 'all' (default {N.DEFAULT_METHOD})")
    parser.add_argument("--n", type=int, default=N.CHECK_N, help=f"first N images of the split (default {N.CHECK_N})")
    parser.add_argument("--sanity-n", type=int, default=N.CHECK_SANITY_N,
                        help=f"first images used by the randomisation check (default {N.CHECK_SANITY_N})")
    parser.add_argument("--layer", help="layer the CAM methods attach to (default: per model, see docs/gradcam.md)")
    parser.add_argument("--steps", type=int, default=N.DELETION_STEPS,
                        help=f"deletion/insertion steps from 0 to 100%% (default {N.DELETION_STEPS})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random orders and re-initialisations")
    parser.add_argument("--split", choices=("test", "train"), default="test")
    parser.add_argument("--data-dir", help="root holding FashionMNIST/raw and MNIST/raw")
    parser.add_argument("--out", type=Path, help=f"output folder (default RUN_DIR/{N.CHECK_OUT_FOLDER})")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    return parser
