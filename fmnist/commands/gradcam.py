"""``fmnist gradcam RUN`` (= ``python evaluate.py gradcam``): explain right and wrong test images per class."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fmnist.data.classes import match_label
from fmnist.data.sources import load_dataset
from fmnist.errors import FmnistError
from fmnist.figures.explanations import explained_items, save_figure, save_grid
from fmnist.interpret.gradcam import explain
from fmnist.interpret.layers import resolve_layer
from fmnist.interpret.methods import get_method
from fmnist.interpret.selection import default_selection
from fmnist.outputs import check_output, mark_output
from fmnist.training.checkpoints import load_trained


def parse_class(value: str, class_names: Sequence[str]) -> int:
    """``--class`` as an index or a class name (case-insensitive, punctuation ignored)."""
    index = match_label(value, class_names)
    if index is None:
        raise FmnistError(f"--class {value!r} is not a class; choose an index 0..{len(class_names) - 1} or one of: "
                          f"{', '.join(class_names)}.")
    return index


def run(args: argparse.Namespace) -> int:
    trained = load_trained(args.checkpoint, map_location=args.device)
    names = trained.class_names
    target = parse_class(args.target, names) if args.target is not None else None
    method = get_method(args.method)
    resolve_layer(trained.module.model, trained.model_name, args.layer)  # fail fast, before loading data
    images, labels = load_dataset(trained.dataset, args.data_dir).split(args.split)
    if args.index:
        bad = [i for i in args.index if not 0 <= i < len(labels)]
        if bad:
            raise FmnistError(f"--index {bad[0]} is out of range: the {args.split} split has {len(labels)} images "
                              f"(0..{len(labels) - 1}).")
        indices = list(dict.fromkeys(args.index))
    else:
        indices = default_selection(trained.predict_proba(images), labels)
    chosen = images[indices]
    result = explain(trained, chosen, target=target, layer=args.layer, method=method.name)
    out = args.out or (trained.run_dir / "gradcam" if trained.run_dir else Path("reports") / "gradcam" / trained.model_name)
    check_output(out, "gradcam")
    items = explained_items(result, chosen, names, [int(labels[i]) for i in indices], [f"#{i}" for i in indices])
    if result.layer is None:
        where = "pixel-level, model-agnostic"
    else:
        where = f"at layer {result.layer}, {'receptive-field aligned' if result.aligned else 'stretched'} upsampling"
    table = Table(title=f"{method.title} of {trained.model_name} ({args.split} split, {where})")
    for column in ("index", "true", "predicted", "confidence", "explained class", "figure"):
        table.add_column(column)
    for index, item in zip(indices, items, strict=True):
        figure = "" if args.no_single else str(save_figure(item, out / f"gradcam_{args.split}_{index:05d}.png"))
        if item.blank:
            figure = f"[red]blank map[/red] {figure}"
        style = "green" if item.true == item.predicted else "red"
        table.add_row(str(index), item.true or "", f"[{style}]{item.predicted}[/{style}]", f"{item.confidence:.1%}",
                      item.target or item.predicted, figure)
    grid = save_grid(items, out / "gradcam_grid.png", per_row=args.per_row,
                     title=f"{trained.model_name}: {method.title}" + (f" at {result.layer}" if result.layer else ""))
    mark_output(out, "gradcam")
    console = Console()
    console.print(table)
    blank = int(result.blank.sum())
    if blank:
        console.print(f"[red]{blank} of {len(items)} maps are blank[/red] (no positive value; drawn as 'blank map')")
    console.print(f"grid: {grid}")
    return 0
