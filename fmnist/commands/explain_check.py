"""``fmnist explain-check RUN`` (= ``python evaluate.py explain-check``): are the explanation maps trustworthy?"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fmnist.data.sources import load_dataset
from fmnist.errors import FmnistError
from fmnist.interpret.check import OUT_FOLDER, method_names, run_checks
from fmnist.interpret.layers import resolve_layer
from fmnist.outputs import check_output, mark_output
from fmnist.training.checkpoints import load_trained


def run(args: argparse.Namespace) -> int:
    methods = method_names(args.method)
    for flag, value, minimum in (("--n", args.n, 1), ("--sanity-n", args.sanity_n, 2), ("--steps", args.steps, 2)):
        if value < minimum:
            raise FmnistError(f"{flag} must be at least {minimum}, got {value}.")
    trained = load_trained(args.checkpoint, map_location=args.device)
    if args.layer is not None:
        resolve_layer(trained.module.model, trained.model_name, args.layer)  # fail fast, before loading data
    images, labels = load_dataset(trained.dataset, args.data_dir).split(args.split)
    if args.n > len(labels):
        raise FmnistError(f"--n {args.n} is more than the {len(labels):,} images of the {args.split} split; "
                          f"pass --n {len(labels)} or less.")
    out = args.out or (trained.run_dir / OUT_FOLDER if trained.run_dir else
                       Path("reports") / OUT_FOLDER / trained.model_name)
    check_output(out, "explain-check")
    summary = run_checks(trained, images[:args.n], labels[:args.n], out, methods, args.sanity_n, args.layer,
                         args.steps, args.seed, args.split)
    mark_output(out, "explain-check")
    table = Table(title=f"explain-check: {trained.model_name}, first {summary['n']:,} {args.split} images "
                        f"(accuracy {summary['accuracy']:.1%})")
    for column in ("method", "layer", "blank", "mass on garment / area", "deletion / random",
                   "deletion / garment-first", "insertion / random", "rank corr. after randomisation",
                   "(in garment)"):
        table.add_column(column)
    for entry in summary["methods"].values():
        maps, faith, sanity = entry["maps"], entry["faithfulness"], entry["randomisation"]
        rho, inside = sanity["final_spearman_mean"], sanity["final_spearman_mean_in_region"]
        table.add_row(entry["title"], entry["layer"] or "-", f"{maps['blank_rate']:.1%}",
                      f"{maps['garment_mass_share'] or 0:.1%} / {maps['garment_area'] or 0:.1%}",
                      f"{faith['deletion']['ratio_random']:.2f}", f"{faith['deletion']['ratio_garment']:.2f}",
                      f"{faith['insertion']['ratio_random']:.2f}", "-" if rho is None else f"{rho:.2f}",
                      "-" if inside is None else f"{inside:.2f}")
    console = Console()
    console.print(table)
    console.print(f"report: {out / 'explain_check.md'} (JSON, HTML and figures beside it)")
    return 0
