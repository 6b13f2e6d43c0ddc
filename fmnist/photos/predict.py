"""``python evaluate.py predict``: classify real-world photos with a trained model.

Inputs are files, folders (recursively), ``file,label`` CSVs, http(s) URLs and IIIF
manifests (``*.json`` files or URLs that answer with JSON). Each photo is preprocessed to a
28x28 Fashion-MNIST-like image (``--preprocess fashion``, the default: GrabCut segmentation and
Fashion-MNIST's own framing; ``ours`` and study B's ``plain`` stay for comparison), and
that exact model input is saved as a PNG so a person can see what the model saw. A bad
input prints one line (``name: reason``) and the batch carries on; the exit status is 1 if
any input failed, 2 if none could be used.

Inputs are streamed: each photo is read, preprocessed to its 28x28 input and dropped, and
predictions are written (``predictions.csv`` rows, input PNGs) batch by batch as they are
made, so memory stays flat over a long folder or manifest. URLs are fetched from public hosts
only (``--allow-private-hosts`` lifts that) under one deadline each; folders, CSVs and
manifests give at most ``--max-images`` photos each.

Labelled inputs (class-named sub-folders, ``labels.csv`` / ``file,label`` CSV, IIIF
``True:`` annotations) are scored: accuracy, confusion matrix and -- when
:mod:`fmnist.evaluation` is available -- its full report.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fmnist.data.augment import settings_from_hparams
from fmnist.errors import FmnistError
from fmnist.evaluation.report import write_report
from fmnist.figures.explanations import explained_items, save_figure, save_grid
from fmnist.figures.photos import StepsSample
from fmnist.files import save_figure_atomic, write_json_atomic
from fmnist.interpret.gradcam import explain
from fmnist.interpret.methods import METHODS
from fmnist.outputs import check_output, mark_output
from fmnist.photos.iiif_text import PredictionRecord, write_prediction_annotations
from fmnist.photos.inputs import (
    InputProblem,
    is_url,
    printable,
    safe_stem,
)
from fmnist.photos.stream import PhotoOptions, PhotoResult, iter_loaded, iter_sources, say
from fmnist.predictions import Predictions
from fmnist.training.checkpoints import TrainedModel, load_trained


def classify(results: Iterable[PhotoResult], members: Sequence[TrainedModel],
             batch_size: int = 32) -> Iterator[PhotoResult]:
    """``results`` with ``probs`` filled in (the members' mean), predicted ``batch_size`` at a time as they arrive."""
    batch: list[PhotoResult] = []

    def flush() -> list[PhotoResult]:
        pixels = torch.from_numpy(np.stack([r.input.pixels for r in batch]))
        probs = torch.stack([m.predict_proba(pixels) for m in members]).mean(0).numpy()
        for result, p in zip(batch, probs, strict=True):
            result.probs = p
        done = list(batch)
        batch.clear()
        return done

    for result in results:
        batch.append(result)
        if len(batch) >= batch_size:
            yield from flush()
    if batch:
        yield from flush()


class PredictionWriter:
    """Writes each prediction as it is made: the exact 28x28 model input as a PNG and a ``predictions.csv`` row.

    Files appear only once the first prediction arrives, and each row is flushed at once, so an
    interrupted run keeps what it did and a reader can follow along.
    """

    def __init__(self, out: Path, class_names: Sequence[str], top: int) -> None:
        self.folder = out / "inputs"
        self.csv_path = out / "predictions.csv"
        self.class_names = class_names
        self.top = top
        self.count = 0
        self._handle = None
        self._writer = None

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._handle is not None:
            self._handle.close()

    def write(self, result: PhotoResult) -> None:
        from PIL import Image

        if self._writer is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._handle = self.csv_path.open("w", newline="", encoding="utf-8", errors="backslashreplace")
            self._writer = csv.writer(self._handle)
            header = ["file", "input_png", "label"]
            for k in range(1, self.top + 1):
                header += [f"top{k}", f"p{k}"]
            self._writer.writerow(header)
        self.count += 1
        path = self.folder / f"{self.count:03d}_{safe_stem(result.source.name)}.png"
        Image.fromarray(result.input.pixels, mode="L").save(path)
        result.input_png = path
        source = result.source
        row = [printable(source.location), str(path),
               self.class_names[source.label] if source.label is not None else (source.label_text or "")]
        for k in np.argsort(-result.probs)[:self.top]:
            row += [self.class_names[k], f"{result.probs[k]:.4f}"]
        self._writer.writerow(row)
        self._handle.flush()


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
    save_figure_atomic(fig, path, dpi=90)
    plt.close(fig)
    return path


def confusion(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def score_labelled(results: list[PhotoResult], class_names: Sequence[str], model_name: str, recipe: str,
                   checkpoints: Sequence[Path], out: Path) -> dict:
    """Accuracy and confusion matrix; the full evaluation report when ``fmnist.evaluation`` is importable."""
    labelled = [r for r in results if r.source.label is not None]
    labels = np.array([r.source.label for r in labelled], dtype=np.int64)
    probs = np.stack([r.probs for r in labelled]).astype(np.float32)
    predicted = probs.argmax(axis=1)
    matrix = confusion(labels, predicted, len(class_names))
    summary = {"n": len(labels), "accuracy": float((predicted == labels).mean()), "preprocess": recipe,
               "confusion_matrix": matrix.tolist(), "class_names": list(class_names), "model": model_name,
               "checkpoint": str(checkpoints[0]), "checkpoints": [str(c) for c in checkpoints],
               "files": [printable(r.source.location) for r in labelled], "report": None}
    out.mkdir(parents=True, exist_ok=True)
    predictions = Predictions(
        probs=probs, labels=labels, indices=np.arange(len(labels)), dataset="photos", model=model_name,
        class_names=tuple(class_names), split=recipe,
        images=np.stack([r.input.pixels for r in labelled]),
        meta={"checkpoint": str(checkpoints[0]), "members": [str(c) for c in checkpoints], "preprocess": recipe},
    )
    report_dir = out / "report"
    write_report(predictions, report_dir, name=f"{model_name}-photos-{recipe}")
    summary["report"] = str(report_dir)
    write_json_atomic(out / "metrics.json", summary, default=str)
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


def load_members(locations: Sequence[str | Path], device: str) -> list[TrainedModel]:
    """The run and its ``--ensemble`` partners; all must name the same classes in the same order."""
    if len({str(Path(x).resolve()) for x in locations}) != len(locations):
        raise FmnistError("--ensemble lists a run twice (or the first run again); give each member once.")
    members = [load_trained(x, map_location=device) for x in locations]
    for other in members[1:]:
        if tuple(other.class_names) != tuple(members[0].class_names):
            raise FmnistError(f"--ensemble member {other.checkpoint} predicts {', '.join(other.class_names)}, the "
                              f"first run {', '.join(members[0].class_names)}; ensemble runs of one dataset.")
    return members


@dataclass
class PhotoRun:
    """What :func:`predict_photos` did: the photos' results, the scored summary (labelled inputs), the failures."""

    out: Path
    results: list[PhotoResult]
    summary: dict | None
    failures: int
    csv_path: Path
    annotations: list[Path]


def predict_photos(locations: Sequence[str | Path], inputs: Sequence[str], *, out: str | Path | None = None,
                   options: PhotoOptions | None = None, gradcam: bool = False, write_iiif: bool = False,
                   top: int = 3, device: str = "cpu", show: bool = False) -> PhotoRun:
    """Classify photos with one run (or the average of several runs' probabilities); write the report folder.

    ``locations``: run folders or checkpoints (more than one: a small ensemble; Grad-CAM explains the first).
    Bad inputs are named on stderr, one line each, and counted in ``failures``; none usable is one sentence.
    """
    options = options or PhotoOptions()
    options.check()
    if top <= 0:
        raise FmnistError(f"--top must be positive, got {top}.")
    members = load_members(list(locations), device)
    trained = members[0]
    names = trained.class_names
    model_name = trained.model_name if len(members) == 1 else f"{trained.model_name}-ensemble{len(members)}"
    out = Path(out) if out else (trained.run_dir / "photos" if trained.run_dir
                                 else Path("reports") / "photos" / trained.model_name)
    check_output(out, "predict")
    manifests: list = []
    failures = 0

    def report(problem: InputProblem) -> None:
        nonlocal failures
        say(problem)
        failures += problem.fatal

    top = min(top, len(names))
    sources = iter_sources(inputs, names, options, manifests, report)
    results: list[PhotoResult] = []  # 28x28 inputs and probabilities only: ~1 KB per photo
    steps = StepsSample()  # photo + mask kept only for the steps figure's 12 photos
    if not all(settings_from_hparams(m.data_hparams).reframe for m in members):
        print("note: photos are classified best by a model trained with configs/photo.yaml (docs/photos.md).")
    with PredictionWriter(out, names, top) as writer:
        for result in classify(iter_loaded(sources, names, options, manifests, report), members):
            writer.write(result)
            steps.offer(result.input, result.probs, result.source.label, result.source.name)
            results.append(result)
    if not results:
        raise FmnistError(f"none of the inputs could be used as a photo ({failures} problem(s), listed above).")
    mark_output(out, "predict")
    pixels = torch.from_numpy(np.stack([r.input.pixels for r in results]))
    if show:
        print_results(results, names, top)
    save_contact_sheet(results, names, out / "inputs_sheet.png")
    steps.save(names, out / "steps.png")
    if gradcam:
        explained = explain(trained, pixels)
        items = explained_items(explained, pixels, names, [r.source.label for r in results],
                                [r.source.name[-28:] for r in results])
        for result, item in zip(results, items, strict=True):
            save_figure(item, out / "gradcam" / f"{result.input_png.stem}.png")
        save_grid(items[:60], out / "gradcam" / "gradcam_grid.png", per_row=2,
                  title=f"{trained.model_name}: {METHODS[explained.method].title} at {explained.layer}")
    summary = None
    if any(r.source.label is not None for r in results):
        summary = score_labelled(results, names, model_name, options.preprocess, [m.checkpoint for m in members], out)
        if show:
            print_summary(summary, names, options.preprocess)
    written: list[Path] = []
    if write_iiif:
        if not manifests:
            say("--write-annotations", "warning: no IIIF manifest among the inputs; nothing written.")
        written = write_annotations(manifests, results, names, model_name, out)
    return PhotoRun(out, results, summary, failures, writer.csv_path, written)
