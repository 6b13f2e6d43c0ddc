"""``fmnist gradcam RUN`` (= ``python evaluate.py gradcam``): options."""

from __future__ import annotations

import argparse
from pathlib import Path

from fmnist.commands import names as N


def build_parser(prog: str = "fmnist gradcam") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Explanation figures (Grad-CAM and friends, through Captum): original, heatmap and overlay "
                    "per image, plus a grid.")
    parser.add_argument("checkpoint", metavar="RUN_DIR_OR_CKPT", help="run folder or .ckpt file")
    parser.add_argument("--index", type=int, nargs="+", metavar="I",
                        help="images of the split to explain (default: one correct + one wrong per class)")
    parser.add_argument("--class", dest="target", metavar="C",
                        help="explain this class (index or name) instead of the predicted one")
    parser.add_argument("--method", default=N.DEFAULT_METHOD, choices=list(N.METHODS),
                        help=f"explanation method (default {N.DEFAULT_METHOD}; see docs/gradcam.md)")
    parser.add_argument("--layer", help="layer the CAM methods attach to (default: the last conv layer whose grid "
                                        "is at least 8x8, per registry)")
    parser.add_argument("--out", type=Path, help="output folder (default: RUN_DIR/gradcam or reports/gradcam/MODEL)")
    parser.add_argument("--split", choices=("test", "train"), default="test")
    parser.add_argument("--data-dir", help="root holding FashionMNIST/raw and MNIST/raw")
    parser.add_argument("--per-row", type=int, default=2, help="images per row in the grid (default 2)")
    parser.add_argument("--no-single", action="store_true", help="write only the grid, not one figure per image")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    return parser
