"""``fmnist predict RUN PATH_OR_URL ...`` (= ``python evaluate.py predict``): options."""

from __future__ import annotations

import argparse
from pathlib import Path

from fmnist.commands import names as N


def build_parser(prog: str = "fmnist predict") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Classify photos (files, folders, file,label CSVs, http(s) URLs, IIIF manifests) with a trained "
                    "model; labelled sets get accuracy, a confusion matrix and the evaluation report.")
    parser.add_argument("checkpoint", metavar="RUN_DIR_OR_CKPT", help="run folder or .ckpt file")
    parser.add_argument("inputs", nargs="+", metavar="PATH_OR_URL",
                        help="image files, folders (class-named sub-folders or labels.csv = labelled), "
                             "file,label CSVs, http(s) URLs, IIIF manifests (.json or URL)")
    parser.add_argument("--ensemble", nargs="+", default=[], metavar="RUN",
                        help="more runs (e.g. other seeds of configs/photo.yaml) whose class probabilities are "
                             "averaged with the first's: a small ensemble; --gradcam explains the first run")
    parser.add_argument("--out", type=Path, help="output folder (default: RUN_DIR/photos or reports/photos/MODEL)")
    parser.add_argument("--preprocess", choices=N.PREPROCESSORS, default=N.RECOMMENDED_PREPROCESS,
                        help="fashion (default): GrabCut segmentation, then Fashion-MNIST's framing (bounding box, "
                             "longest side 28, negate; no sharpening); ours: invert only on light backgrounds, crop to the "
                             "garment, pad to square; plain: study B's grayscale + invert + LANCZOS resize")
    parser.add_argument("--gradcam", action="store_true", help="also save a Grad-CAM figure per photo and a grid")
    parser.add_argument("--annotations", nargs="+", default=[], metavar="LIST",
                        help="extra IIIF annotation lists/pages (files or URLs) for the manifests given")
    parser.add_argument("--write-annotations", action="store_true",
                        help="write predictions back as a IIIF annotation list per manifest (under OUT/iiif/)")
    parser.add_argument("--top", type=int, default=3, help="classes shown per photo (default 3)")
    parser.add_argument("--timeout", type=float, default=N.PHOTO_TIMEOUT,
                        help="seconds per URL: one deadline for connecting, headers, body and redirects (default 15)")
    parser.add_argument("--max-bytes", type=int, default=N.PHOTO_MAX_BYTES, help="size cap per file or download")
    parser.add_argument("--max-pixels", type=int, default=N.PHOTO_MAX_PIXELS, help="decompression-bomb guard")
    parser.add_argument("--max-images", type=int, default=N.PHOTO_MAX_IMAGES,
                        help=f"photos used per folder, CSV or IIIF manifest (default {N.PHOTO_MAX_IMAGES}); "
                             f"the rest are skipped with a warning")
    parser.add_argument("--max-json-bytes", type=int, default=N.IIIF_MAX_JSON_BYTES,
                        help="size cap per IIIF manifest or annotation list (default 16 MiB)")
    parser.add_argument("--allow-private-hosts", action="store_true",
                        help="let URLs (and their redirects) reach loopback, private and link-local addresses; "
                             "by default only public internet hosts are contacted")
    parser.add_argument("--allow-outside-csv", action="store_true",
                        help="let a file,label CSV name files outside its own folder (absolute paths, ../); by "
                             "default such rows are refused, so a CSV cannot make the report read any file")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    return parser
