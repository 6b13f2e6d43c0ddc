"""``fmnist calibrate RUN`` (= ``python evaluate.py calibrate``): fit, save and report a softmax temperature."""

from __future__ import annotations

import argparse
from pathlib import Path

from fmnist.errors import FmnistError
from fmnist.evaluation.calibration import apply_temperature, calibrate, print_record
from fmnist.evaluation.metrics import calibration_bins
from fmnist.evaluation.predict import safe_name
from fmnist.evaluation.report import REPORTS_DIR
from fmnist.figures.evaluation import reliability_diagram
from fmnist.files import write_json_atomic
from fmnist.outputs import check_output, mark_output
from fmnist.predictions import json_default
from fmnist.terminal import console


def run(args: argparse.Namespace) -> int:
    if bool(args.target) == bool(args.baseline):
        raise FmnistError("pass either a run folder/checkpoint or --baseline NAME (e.g. evaluate.py calibrate "
                          "lightning_logs/deep/version_0).")
    if args.bins < 1:
        raise FmnistError(f"--bins must be at least 1, got {args.bins}.")
    if args.target and not Path(args.target).exists():
        raise FmnistError(f"{args.target} does not exist; pass a run folder such as lightning_logs/deep/version_0.")
    if args.out:
        check_output(args.out, "calibrate")
    options = {"n_jobs": args.n_jobs} if args.baseline else {}
    record, test = calibrate(args.target or args.baseline, data_dir=args.data_dir, device=args.device,
                             n_bins=args.bins, **options)
    out = Path(args.out) if args.out else REPORTS_DIR / safe_name(f"{record['run']}_calibration")
    check_output(out, "calibrate")
    if not args.no_plots:
        for when, pred in (("before", test), ("after", apply_temperature(test, record["temperature"]))):
            ece = record["test"][when]["ece"]
            reliability_diagram(calibration_bins(pred.probs, pred.labels, args.bins), ece,
                                out / f"reliability_{when}.png",
                                title=f"{record['run']} on {test.dataset} test, {when} temperature scaling")
    write_json_atomic(out / "calibration.json", record, default=json_default)
    mark_output(out, "calibrate")
    print_record(record)
    console().print(f"saved: {record['file']}\nreport: {out}")
    return 0
