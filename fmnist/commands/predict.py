"""``fmnist predict RUN PATH_OR_URL ...`` (= ``python evaluate.py predict``): classify real-world photos.

Exit status 1 if any input could not be used (each named on its own line), 2 if none could.
"""

from __future__ import annotations

import argparse
import sys

from fmnist.photos.predict import predict_photos
from fmnist.photos.stream import PhotoOptions


def run(args: argparse.Namespace) -> int:
    options = PhotoOptions(preprocess=args.preprocess, annotations=tuple(args.annotations), timeout=args.timeout,
                           max_bytes=args.max_bytes, max_pixels=args.max_pixels, max_images=args.max_images,
                           max_json_bytes=args.max_json_bytes, allow_private_hosts=args.allow_private_hosts,
                           allow_outside_csv=args.allow_outside_csv)
    result = predict_photos([args.checkpoint, *args.ensemble], args.inputs, out=args.out, options=options,
                            gradcam=args.gradcam, write_iiif=args.write_annotations, top=args.top, device=args.device,
                            show=True)
    for path in result.annotations:
        print(f"IIIF annotations: {path}")
    print(f"predictions: {result.csv_path}; model inputs: {result.out / 'inputs'}"
          + (f"; Grad-CAM: {result.out / 'gradcam'}" if args.gradcam else ""))
    if result.failures:
        print(f"{result.failures} input(s) could not be used (see the lines above).", file=sys.stderr)
    return 1 if result.failures else 0
