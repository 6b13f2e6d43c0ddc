"""``python evaluate.py predict``: classify real-world photos with a trained model.

Inputs are files, folders (recursively), ``file,label`` CSVs, http(s) URLs and IIIF
manifests (``*.json`` files or URLs that answer with JSON). Each photo is preprocessed to a
28x28 Fashion-MNIST-like image (``--preprocess ours``, or study B's ``plain`` recipe), and
that exact model input is saved as a PNG so a person can see what the model saw. A bad
input prints one line (``name: reason``) and the batch carries on; the exit status is 1 if
any input failed, 2 if none could be used.

Labelled inputs (class-named sub-folders, ``labels.csv`` / ``file,label`` CSV, IIIF
``True:`` annotations) are scored: accuracy, confusion matrix and -- when
:mod:`fmnist.evaluation` is available -- its full report.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fmnist.errors import FmnistError
from fmnist.evaluation.report import write_report
from fmnist.interpret.figures import explained_items, save_figure, save_grid
from fmnist.interpret.gradcam import explain
from fmnist.photos.iiif import (
    IIIFError,
    PredictionRecord,
    manifest_sources,
    parse_manifest,
    read_manifest,
    write_prediction_annotations,
)
from fmnist.photos.inputs import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_TIMEOUT,
    InputProblem,
    PhotoError,
    PhotoSource,
    crop_region,
    decode_image,
    expand_inputs,
    is_url,
    read_bytes,
    safe_stem,
)
from fmnist.photos.preprocess import PREPROCESSORS, Preprocessed, preprocess
from fmnist.predictions import Predictions
from fmnist.training.checkpoints import load_trained


@dataclass
class PhotoResult:
    source: PhotoSource
    input: Preprocessed
    probs: np.ndarray | None = None  # [C]
    input_png: Path | None = None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evaluate.py predict",
        description="Classify photos (files, folders, file,label CSVs, http(s) URLs, IIIF manifests) with a trained "
                    "model; labelled sets get accuracy, a confusion matrix and the evaluation report.")
    parser.add_argument("checkpoint", metavar="RUN_DIR_OR_CKPT", help="run folder or .ckpt file")
    parser.add_argument("inputs", nargs="+", metavar="PATH_OR_URL",
                        help="image files, folders (class-named sub-folders or labels.csv = labelled), "
                             "file,label CSVs, http(s) URLs, IIIF manifests (.json or URL)")
    parser.add_argument("--out", type=Path, help="output folder (default: RUN_DIR/photos or reports/photos/MODEL)")
    parser.add_argument("--preprocess", choices=sorted(PREPROCESSORS), default="ours",
                        help="ours (default): invert only on light backgrounds, crop to the garment, pad to square; "
                             "plain: study B's grayscale + invert + LANCZOS resize")
    parser.add_argument("--gradcam", action="store_true", help="also save a Grad-CAM figure per photo and a grid")
    parser.add_argument("--annotations", nargs="+", default=[], metavar="LIST",
                        help="extra IIIF annotation lists/pages (files or URLs) for the manifests given")
    parser.add_argument("--write-annotations", action="store_true",
                        help="write predictions back as a IIIF annotation list per manifest (under OUT/iiif/)")
    parser.add_argument("--top", type=int, default=3, help="classes shown per photo (default 3)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per URL download")
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES, help="size cap per file or download")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="decompression-bomb guard")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    return parser


def _say(problem: InputProblem | str, message: str | None = None) -> None:
    """One line per bad input on stderr: ``name: reason`` (warnings say so)."""
    if isinstance(problem, InputProblem):
        prefix = "" if problem.fatal else "warning: "
        print(f"{problem.name}: {prefix}{problem.message}", file=sys.stderr)
    else:
        print(f"{problem}: {message}", file=sys.stderr)


def _manifest_sources(location: str, class_names: Sequence[str], args: argparse.Namespace, data=None):

    try:
        manifest = (read_manifest(location, args.annotations, args.timeout, args.max_bytes) if data is None
                    else parse_manifest(data, location, args.annotations, args.timeout, args.max_bytes))
    except IIIFError as exc:
        return None, [], [InputProblem(location, str(exc).removeprefix(f"{location}: "))]
    sources, problems = manifest_sources(manifest, class_names)
    return manifest, sources, problems


def load_all(sources: list[PhotoSource], class_names: Sequence[str], args: argparse.Namespace,
             manifests: list) -> tuple[list[PhotoResult], int]:
    """Read + preprocess every source; URLs answering with JSON are treated as IIIF manifests."""
    results: list[PhotoResult] = []
    failures = 0
    cache: dict[str, bytes] = {}  # several IIIF regions may share one image
    queue = list(sources)
    while queue:
        source = queue.pop(0)
        try:
            data = cache.get(source.location)
            if data is None:
                data = read_bytes(source.location, args.timeout, args.max_bytes)
                if is_url(source.location) and data.lstrip()[:1] in (b"{", b"["):
                    if source.meta.get("manifest"):
                        raise PhotoError("answered with JSON, not an image.")
                    try:
                        document = json.loads(data.decode("utf-8-sig"))
                    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                        raise PhotoError(f"answered with invalid JSON ({exc}).") from None
                    manifest, found, problems = _manifest_sources(source.location, class_names, args, document)
                    for problem in problems:
                        _say(problem)
                        failures += problem.fatal
                    if manifest is not None:
                        manifests.append(manifest)
                    queue[:0] = found
                    continue
                cache[source.location] = data
            image = crop_region(decode_image(data, args.max_pixels), source.region)
            results.append(PhotoResult(source, preprocess(image, args.preprocess)))
        except PhotoError as exc:
            _say(source.name, str(exc))
            failures += 1
    return results, failures


def save_inputs(results: list[PhotoResult], folder: Path) -> None:
    """The exact 28x28 model inputs, one PNG per photo, so a person can see what the model saw."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for number, result in enumerate(results, start=1):
        path = folder / f"{number:03d}_{safe_stem(result.source.name)}.png"
        Image.fromarray(result.input.pixels, mode="L").save(path)
        result.input_png = path


def save_contact_sheet(results: list[PhotoResult], class_names: Sequence[str], path: Path, limit: int = 120) -> Path:
    """All model inputs on one page with the top prediction (green right, red wrong)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = results[:limit]
    columns = min(10, len(shown))
    rows = -(-len(shown) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.1, rows * 1.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, result in zip(axes.flat, shown, strict=False):
        ax.imshow(result.input.pixels, cmap="gray", vmin=0, vmax=255)
        top = int(np.argmax(result.probs))
        label = result.source.label
        colour = "black" if label is None else ("tab:green" if label == top else "tab:red")
        ax.set_title(f"{class_names[top][:9]} {result.probs[top]:.0%}", fontsize=6, color=colour)
    fig.tight_layout(pad=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_predictions_csv(results: list[PhotoResult], class_names: Sequence[str], top: int, path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        header = ["file", "input_png", "label"]
        for k in range(1, top + 1):
            header += [f"top{k}", f"p{k}"]
        writer.writerow(header)
        for result in results:
            order = np.argsort(-result.probs)[:top]
            row = [result.source.location, str(result.input_png or ""),
                   class_names[result.source.label] if result.source.label is not None else
                   (result.source.label_text or "")]
            for k in order:
                row += [class_names[k], f"{result.probs[k]:.4f}"]
            writer.writerow(row)
    return path


def confusion(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def score_labelled(results: list[PhotoResult], class_names: Sequence[str], model_name: str, recipe: str,
                   checkpoint: Path, out: Path) -> dict:
    """Accuracy and confusion matrix; the full evaluation report when ``fmnist.evaluation`` is importable."""
    labelled = [r for r in results if r.source.label is not None]
    labels = np.array([r.source.label for r in labelled], dtype=np.int64)
    probs = np.stack([r.probs for r in labelled]).astype(np.float32)
    predicted = probs.argmax(axis=1)
    matrix = confusion(labels, predicted, len(class_names))
    summary = {"n": len(labels), "accuracy": float((predicted == labels).mean()), "preprocess": recipe,
               "confusion_matrix": matrix.tolist(), "class_names": list(class_names), "model": model_name,
               "checkpoint": str(checkpoint), "files": [r.source.location for r in labelled], "report": None}
    out.mkdir(parents=True, exist_ok=True)
    predictions = Predictions(
        probs=probs, labels=labels, indices=np.arange(len(labels)), dataset="photos", model=model_name,
        class_names=tuple(class_names), split=recipe,
        images=np.stack([r.input.pixels for r in labelled]),
        meta={"checkpoint": str(checkpoint), "preprocess": recipe},
    )
    report_dir = out / "report"
    write_report(predictions, report_dir, name=f"{model_name}-photos-{recipe}")
    summary["report"] = str(report_dir)
    (out / "metrics.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return summary


def print_results(results: list[PhotoResult], class_names: Sequence[str], top: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(results)} photo(s)")
    table.add_column("#", justify="right")
    table.add_column("file", overflow="fold")
    for k in range(1, top + 1):
        table.add_column(f"top-{k}")
    any_label = any(r.source.label is not None or r.source.label_text for r in results)
    if any_label:
        table.add_column("true")
    for number, result in enumerate(results, start=1):
        order = np.argsort(-result.probs)[:top]
        cells = [f"{class_names[k]} {result.probs[k]:.2f}" for k in order]
        label = result.source.label
        if label is not None:
            style = "green" if order[0] == label else "red"
            cells[0] = f"[{style}]{cells[0]}[/{style}]"
        row = [str(number), result.source.name, *cells]
        if any_label:
            row.append(class_names[label] if label is not None else (result.source.label_text or ""))
        table.add_row(*row)
    Console().print(table)


def print_summary(summary: dict, class_names: Sequence[str], recipe: str) -> None:
    from rich.console import Console
    from rich.table import Table

    matrix = np.array(summary["confusion_matrix"])
    rows = [i for i in range(len(class_names)) if matrix[i].sum()]
    columns = [j for j in range(len(class_names)) if matrix[:, j].sum()]
    table = Table(title=f"confusion matrix (rows true, columns predicted; preprocessing {recipe})")
    table.add_column("true \\ pred")
    for j in columns:
        table.add_column(class_names[j][:10], justify="right")
    for i in rows:
        table.add_row(class_names[i], *[str(matrix[i, j]) for j in columns])
    console = Console()
    console.print(table)
    correct = int(np.trace(matrix))
    console.print(f"accuracy {summary['accuracy']:.1%} ({correct}/{summary['n']} labelled photos, "
                  f"model {summary['model']}, preprocessing {recipe})")
    if summary.get("report"):
        console.print(f"evaluation report: {summary['report']}")


def write_annotations(manifests: list, results: list[PhotoResult], class_names: Sequence[str], model_name: str,
                      out: Path) -> list[Path]:
    """One annotation list per manifest, in the manifest's own Presentation version."""

    written = []
    for number, manifest in enumerate(manifests, start=1):
        records = []
        for result in results:
            if result.source.meta.get("manifest") != manifest.id:
                continue
            top = int(np.argmax(result.probs))
            records.append(PredictionRecord(result.source.meta["canvas"], class_names[top], float(result.probs[top]),
                                            result.source.label_text, result.source.meta.get("xywh"), model_name))
        stem = safe_stem(Path(manifest.location).name if not is_url(manifest.location) else manifest.location)
        path = out / "iiif" / f"{number:02d}_{stem}_predictions.json"
        written.append(write_prediction_annotations(records, path, manifest.version))
    return written


def cli_main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    for flag, value in (("--top", args.top), ("--timeout", args.timeout), ("--max-bytes", args.max_bytes),
                        ("--max-pixels", args.max_pixels)):
        if value <= 0:
            raise FmnistError(f"{flag} must be positive, got {value}.")

    trained = load_trained(args.checkpoint, map_location=args.device)
    names = trained.class_names
    out = args.out or (trained.run_dir / "photos" if trained.run_dir else Path("reports") / "photos" / trained.model_name)
    manifests: list = []
    sources: list[PhotoSource] = []
    failures = 0
    plain_inputs = []
    for item in args.inputs:
        if not is_url(item) and Path(item).suffix.lower() == ".json" and not Path(item).is_dir():
            manifest, found, problems = _manifest_sources(item, names, args)
            for problem in problems:
                _say(problem)
                failures += problem.fatal
            if manifest is not None:
                manifests.append(manifest)
            sources += found
        else:
            plain_inputs.append(item)
    found, problems = expand_inputs(plain_inputs, names)
    for problem in problems:
        _say(problem)
        failures += problem.fatal
    sources += found
    results, failed = load_all(sources, names, args, manifests)
    failures += failed
    if not results:
        raise FmnistError(f"none of the inputs could be used as a photo ({failures} problem(s), listed above).")
    pixels = torch.from_numpy(np.stack([r.input.pixels for r in results]))
    probs = trained.predict_proba(pixels).numpy()
    for result, p in zip(results, probs, strict=True):
        result.probs = p
    top = min(args.top, len(names))
    save_inputs(results, out / "inputs")
    csv_path = write_predictions_csv(results, names, top, out / "predictions.csv")
    print_results(results, names, top)
    save_contact_sheet(results, names, out / "inputs_sheet.png")
    if args.gradcam:

        explained = explain(trained, pixels)
        items = explained_items(explained, pixels, names, [r.source.label for r in results],
                                [r.source.name[-28:] for r in results])
        for result, item in zip(results, items, strict=True):
            save_figure(item, out / "gradcam" / f"{result.input_png.stem}.png")
        save_grid(items[:60], out / "gradcam" / "gradcam_grid.png", per_row=2,
                  title=f"{trained.model_name}: Grad-CAM at {explained.layer}")
    if any(r.source.label is not None for r in results):
        print_summary(score_labelled(results, names, trained.model_name, args.preprocess, trained.checkpoint, out),
                      names, args.preprocess)
    if args.write_annotations:
        if not manifests:
            _say("--write-annotations", "warning: no IIIF manifest among the inputs; nothing written.")
        for path in write_annotations(manifests, results, names, trained.model_name, out):
            print(f"IIIF annotations: {path}")
    print(f"predictions: {csv_path}; model inputs: {out / 'inputs'}" + (f"; Grad-CAM: {out / 'gradcam'}"
                                                                        if args.gradcam else ""))
    if failures:
        print(f"{failures} input(s) could not be used (see the lines above).", file=sys.stderr)
    return 1 if failures else 0
