"""Out-of-distribution detection: does the model know when an input is not clothing at all?

The in-distribution test images are the positives, each out-set's images the negatives, and every
detector is a score that should be higher for in-distribution inputs:

* ``msp``: the maximum softmax probability (Hendrycks & Gimpel, ICLR 2017);
* ``energy``: ``logsumexp`` of the logits, i.e. minus the free energy at T = 1 (Liu et al., NeurIPS 2020);
* ``max_logit``: the largest logit (Hendrycks et al., ICML 2022);
* ``mahalanobis``: minus the smallest squared Mahalanobis distance of the final linear layer's input
  to a class mean, under one shared covariance (Lee et al., NeurIPS 2018), both fitted on a
  stratified subset of the run's own training split; the covariance is Ledoit-Wolf shrunk
  (scikit-learn). No input perturbation and no layer ensemble.

Metrics (scikit-learn): AUROC, AUPR-In (in = positive), AUPR-Out (out = positive, scores negated)
and the FPR at 95% TPR (share of out-set inputs accepted when 95% of in-distribution inputs are).
Logit and feature scores exist for CNNs; a baseline's decision function stands in for logits
where it has one. For an ensemble, ``msp`` is read from the averaged probabilities and the other
scores are the members' scores averaged.

Out-sets: a registered dataset's test split (``mnist``), seeded uniform (``noise``) or Gaussian
(``gaussian``) noise, or a path: an ``.npz`` holding ``images`` (uint8 ``[N, 28, 28]``) or a folder
of 28x28 images, such as the inputs ``evaluate.py predict RUN PHOTOS --out DIR`` saves in ``DIR/inputs``.
"""

from __future__ import annotations

import dataclasses
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import logsumexp
from sklearn.covariance import LedoitWolf
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from fmnist.data.sources import DATASETS, load_dataset
from fmnist.data.splits import stratified_subset
from fmnist.errors import FmnistError
from fmnist.evaluation.metrics import compute_metrics
from fmnist.evaluation.scoring import Outputs, Scorer
from fmnist.figures import trust as T
from fmnist.files import write_dict_csv_atomic, write_json_atomic, write_text_atomic
from fmnist.outputs import refuse_run_folder
from fmnist.predictions import Predictions, json_default
from fmnist.terminal import console

SCORES = {
    "msp": "maximum softmax probability (Hendrycks & Gimpel 2017)",
    "energy": "logsumexp of the logits = minus the free energy at T=1 (Liu et al. 2020)",
    "max_logit": "largest logit (Hendrycks et al. 2022)",
    "mahalanobis": "minus the smallest squared Mahalanobis distance of the final layer's input to a class mean, "
                   "shared Ledoit-Wolf covariance fitted on the run's training split (Lee et al. 2018)",
}
SCORE_NAMES = tuple(SCORES)
NOISE_SETS = {
    "noise": "uniform noise, every pixel drawn from 0..255",
    "gaussian": "Gaussian noise, pixels N(128, 64^2) rounded and clipped to 0..255",
}
DEFAULT_OUT_SIZE = 10_000
DEFAULT_FIT_SIZE = 10_000
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


# -- out-sets ----------------------------------------------------------------------------------------
@dataclass
class OutSet:
    """Images a Fashion-MNIST model should not call clothing (labels kept where the set has them)."""

    name: str
    images: np.ndarray  # uint8 [N, 28, 28]
    description: str
    labels: np.ndarray | None = None


def load_out_set(spec: str, *, data_dir: str | None = None, n: int = DEFAULT_OUT_SIZE, seed: int = 0) -> OutSet:
    """``mnist`` (any registered dataset: its test split), ``noise``, ``gaussian``, or a ``.npz`` / image folder.

    A path may carry a name for the tables: ``photos=reports/photos/deep/inputs``.
    """
    if spec in DATASETS:
        data = load_dataset(spec, data_dir)
        return OutSet(spec, data.test_images.numpy(), f"{spec} test split ({data.source})", data.test_labels.numpy())
    if spec in NOISE_SETS:
        if n < 1:
            raise FmnistError(f"--out-size must be at least 1, got {n}.")
        rng = np.random.default_rng([seed, 20_170_928])  # its own stream: the same noise for every model
        if spec == "noise":
            images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        else:
            images = np.clip(np.rint(rng.normal(128.0, 64.0, size=(n, 28, 28))), 0, 255).astype(np.uint8)
        return OutSet(spec, images, f"{NOISE_SETS[spec]} ({n:,} images, seed {seed})")
    name, _, location = spec.rpartition("=") if "=" in spec and not Path(spec).exists() else ("", "", spec)
    path = Path(location)
    if path.is_dir():
        return OutSet(name or path.name, _read_folder(path), f"{len(_image_files(path))} images from {path}")
    if path.is_file() and path.suffix == ".npz":
        return OutSet(name or path.stem, _read_npz(path), f"images of {path}")
    raise FmnistError(f"unknown out-set {spec!r}: use a dataset ({', '.join(DATASETS)}), "
                      f"{' or '.join(NOISE_SETS)}, a .npz holding 'images' or a folder of 28x28 images "
                      f"(optionally named: photos=DIR).")


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _read_folder(folder: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    files = _image_files(folder)
    if not files:
        raise FmnistError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}); pass a folder of 28x28 inputs.")
    images = []
    for path in files:
        try:
            with Image.open(path) as image:
                gray = np.asarray(image.convert("L"), dtype=np.uint8)
        except (OSError, UnidentifiedImageError) as exc:
            raise FmnistError(f"{path} is not a readable image ({exc}); remove it from {folder}.") from None
        if gray.shape != (28, 28):
            raise FmnistError(f"{path} is {gray.shape[1]}x{gray.shape[0]}, not 28x28; make model inputs from "
                              f"photos with `python evaluate.py predict RUN PHOTOS --out DIR` and pass DIR/inputs.")
        images.append(gray)
    return np.stack(images)


def _read_npz(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as data:
            images = data["images"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise FmnistError(f"{path}: no readable 'images' array ({exc}); save one with np.savez(path, images=...).") from None
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28) or not len(images):
        raise FmnistError(f"{path}: 'images' is {images.dtype} {list(images.shape)}, not uint8 [N, 28, 28].")
    return images


# -- scores ------------------------------------------------------------------------------------------
class Mahalanobis:
    """Class means and one shared (Ledoit-Wolf) covariance of penultimate features (Lee et al. 2018)."""

    def __init__(self, means: np.ndarray, covariance: LedoitWolf) -> None:
        self.means, self.covariance = means, covariance

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, num_classes: int) -> Mahalanobis:
        features = np.asarray(features, dtype=np.float64)
        labels = np.asarray(labels)
        missing = sorted(set(range(num_classes)) - set(labels.tolist()))
        if missing:
            raise FmnistError(f"cannot fit Mahalanobis means: no training image of class(es) {missing}.")
        means = np.stack([features[labels == c].mean(axis=0) for c in range(num_classes)])
        covariance = LedoitWolf(assume_centered=True).fit(features - means[labels])
        return cls(means, covariance)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """Minus the squared distance to the nearest class mean (higher = more in-distribution)."""
        features = np.asarray(features, dtype=np.float64)
        if not len(features):
            return np.zeros(0)
        distances = np.stack([self.covariance.mahalanobis(features - mean) for mean in self.means], axis=1)
        return -distances.min(axis=1)


def model_scores(outputs: Outputs, names: Sequence[str] = SCORE_NAMES,
                 mahalanobis: Mahalanobis | None = None) -> dict[str, np.ndarray]:
    """Every score in ``names`` that ``outputs`` allow (logit scores need logits, Mahalanobis a fit)."""
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name == "msp":
            out[name] = outputs.probs.max(axis=1).astype(np.float64)
        elif name == "energy" and outputs.logits is not None:
            out[name] = logsumexp(outputs.logits.astype(np.float64), axis=1)
        elif name == "max_logit" and outputs.logits is not None:
            out[name] = outputs.logits.max(axis=1).astype(np.float64)
        elif name == "mahalanobis" and mahalanobis is not None and outputs.features is not None:
            out[name] = mahalanobis(outputs.features)
    return out


def ensemble_scores(member_scores: Sequence[dict[str, np.ndarray]], mean_probs: np.ndarray) -> dict[str, np.ndarray]:
    """An ensemble's scores: ``msp`` of the averaged probabilities, the others averaged over members having them all."""
    out = {"msp": mean_probs.max(axis=1).astype(np.float64)}
    for name in SCORE_NAMES[1:]:
        if member_scores and all(name in s for s in member_scores):
            out[name] = np.mean([s[name] for s in member_scores], axis=0)
    return out


def detection_metrics(in_scores: np.ndarray, out_scores: np.ndarray) -> dict[str, float]:
    """AUROC, AUPR-In, AUPR-Out and FPR at 95% TPR, in-distribution being the positive class."""
    in_scores, out_scores = np.asarray(in_scores, np.float64), np.asarray(out_scores, np.float64)
    if not len(in_scores) or not len(out_scores):
        raise FmnistError("OOD metrics need at least one in-distribution and one out-of-distribution input.")
    y = np.r_[np.ones(len(in_scores)), np.zeros(len(out_scores))]
    s = np.r_[in_scores, out_scores]
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)  # every threshold: the exact 95% point
    return {"auroc": float(roc_auc_score(y, s)), "aupr_in": float(average_precision_score(y, s)),
            "aupr_out": float(average_precision_score(1 - y, -s)),
            "fpr_at_95_tpr": float(fpr[np.searchsorted(tpr, 0.95, side="left")]),
            "n_in": len(in_scores), "n_out": len(out_scores)}


# -- running it --------------------------------------------------------------------------------------
@dataclass
class ModelScores:
    """One model's (or the ensemble's) scores on the in-set and each out-set, and its in-set predictions."""

    name: str
    in_scores: dict[str, np.ndarray]
    out_scores: dict[str, dict[str, np.ndarray]]
    in_predictions: Predictions
    mahalanobis_fit: dict[str, Any] | None = None


@dataclass
class OodResult:
    in_dataset: str
    out_sets: list[OutSet]
    models: list[ModelScores]  # members first, then the ensemble when there are several
    rows: list[dict[str, Any]] = field(default_factory=list)

    def auroc(self, model: str, out: str, score: str) -> float | None:
        for row in self.rows:
            if (row["model"], row["out"], row["score"]) == (model, out, score):
                return row["auroc"]
        return None


def fit_mahalanobis(scorer: Scorer, fit_size: int = DEFAULT_FIT_SIZE, seed: int = 0) -> tuple[Mahalanobis, dict]:
    """Fit on a stratified ``fit_size`` subset of the run's own training split (never test images)."""
    images, labels, indices = scorer.split("train")
    keep = stratified_subset(np.arange(len(labels)), labels, fit_size, seed=seed)
    features = scorer.outputs(images[keep], features=True).features
    fit = Mahalanobis.fit(features, labels[keep], len(scorer.class_names))
    return fit, {"split": "train", "n": len(keep), "dim": int(features.shape[1]), "seed": seed,
                 "shrinkage": float(fit.covariance.shrinkage_)}


def score_model(scorer: Scorer, in_images: np.ndarray, in_labels: np.ndarray, in_dataset: str,
                out_sets: Sequence[OutSet], names: Sequence[str] = SCORE_NAMES, fit_size: int = DEFAULT_FIT_SIZE,
                seed: int = 0) -> tuple[ModelScores, Outputs, dict[str, Outputs]]:
    """Scores of one model on the in-set and every out-set (plus its raw outputs, for an ensemble)."""
    want_features = "mahalanobis" in names and scorer.meta.get("kind") == "cnn"
    maha, fit_info = fit_mahalanobis(scorer, fit_size, seed) if want_features else (None, None)
    in_out = scorer.outputs(in_images, features=want_features)
    outs = {o.name: scorer.outputs(o.images, features=want_features) for o in out_sets}
    pred = scorer.predictions(in_images, in_labels, dataset=in_dataset, outputs=in_out, keep_images=False)
    scores = ModelScores(scorer.name, model_scores(in_out, names, maha),
                         {name: model_scores(o, names, maha) for name, o in outs.items()}, pred, fit_info)
    return scores, in_out, outs


def detect(scorers: Sequence[Scorer], *, in_dataset: str | None = None, out: Sequence[str] = ("mnist",),
           names: Sequence[str] = SCORE_NAMES, fit_size: int = DEFAULT_FIT_SIZE, data_dir: str | None = None,
           out_size: int = DEFAULT_OUT_SIZE, seed: int = 0, ensemble_name: str = "ensemble") -> OodResult:
    """OOD detection of each model (and of their ensemble when there are several) on ``in_dataset`` vs ``out``."""
    if not scorers:
        raise FmnistError("no model to evaluate; pass a run folder, checkpoint or baseline name.")
    unknown = sorted(set(names) - set(SCORE_NAMES))
    if unknown:
        raise FmnistError(f"unknown OOD score(s) {', '.join(unknown)}; choose from {', '.join(SCORE_NAMES)}.")
    in_dataset = in_dataset or scorers[0].dataset
    data = load_dataset(in_dataset, data_dir or scorers[0].meta.get("data_dir"))
    in_images, in_labels = data.test_images.numpy(), data.test_labels.numpy()
    out_sets = [load_out_set(spec, data_dir=data_dir, n=out_size, seed=seed) for spec in out]
    if len({o.name for o in out_sets}) != len(out_sets):
        raise FmnistError(f"out-sets must have distinct names, got {', '.join(o.name for o in out_sets)}.")
    models, member_outputs = [], []
    for scorer in scorers:
        scores, in_out, outs = score_model(scorer, in_images, in_labels, in_dataset, out_sets, names, fit_size, seed)
        models.append(scores)
        member_outputs.append((in_out, outs))
    if len(scorers) > 1:
        mean_in = np.mean([m[0].probs for m in member_outputs], axis=0)
        pred = scorers[0].predictions(in_images, in_labels, dataset=in_dataset, outputs=Outputs(mean_in),
                                      keep_images=False)
        pred = dataclasses.replace(pred, model=ensemble_name, meta={"kind": "ensemble", "run": ensemble_name,
                                                                    "members": [s.name for s in scorers]})
        out_scores = {}
        for o in out_sets:
            mean_out = np.mean([m[1][o.name].probs for m in member_outputs], axis=0)
            out_scores[o.name] = ensemble_scores([m.out_scores[o.name] for m in models], mean_out)
        models.append(ModelScores(ensemble_name, ensemble_scores([m.in_scores for m in models], mean_in),
                                  out_scores, pred))
    result = OodResult(in_dataset, out_sets, models)
    for model in models:
        for o in out_sets:
            for score, values in model.in_scores.items():
                if score in model.out_scores[o.name]:
                    result.rows.append({"model": model.name, "out": o.name, "score": score,
                                        **detection_metrics(values, model.out_scores[o.name][score])})
    return result


# -- report ------------------------------------------------------------------------------------------
ROW_COLUMNS = ("model", "out", "score", "auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr", "n_in", "n_out")


def summary(result: OodResult) -> dict[str, Any]:
    """The JSON-ready report: sets, every (model, out-set, score) row, in-set accuracy/ECE, best score per pair."""
    best = {}
    for model in result.models:
        for o in result.out_sets:
            rows = [r for r in result.rows if r["model"] == model.name and r["out"] == o.name]
            if rows:
                top = max(rows, key=lambda r: r["auroc"])
                best.setdefault(model.name, {})[o.name] = {"score": top["score"], "auroc": top["auroc"]}
    in_metrics = {}
    for model in result.models:
        m = compute_metrics(model.in_predictions, top_k=())
        in_metrics[model.name] = {"accuracy": m["accuracy"], "nll": m["nll"], "ece": m["ece"],
                                  "temperature": model.in_predictions.meta.get("temperature")}
    return {"in": {"dataset": result.in_dataset, "split": "test", "n": result.models[0].in_predictions.n},
            "out_sets": [{"name": o.name, "n": len(o.images), "description": o.description} for o in result.out_sets],
            "scores": {"higher_means": "in-distribution", "definitions": SCORES},
            "mahalanobis_fit": {m.name: m.mahalanobis_fit for m in result.models if m.mahalanobis_fit},
            "in_distribution": in_metrics, "rows": result.rows, "best": best}


def to_markdown(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| model | out-set | score | AUROC | AUPR-In | AUPR-Out | FPR@95TPR |", "|---|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['out']} | {r['score']} | {r['auroc']:.4f} | {r['aupr_in']:.4f} | "
              f"{r['aupr_out']:.4f} | {r['fpr_at_95_tpr']:.4f} |" for r in rows]
    return "\n".join(lines) + "\n"


def write_ood(result: OodResult, out_dir: str | Path, *, plots: bool = True) -> dict[str, Any]:
    """``ood.json``, ``ood.csv``, ``ood.md`` and, for the ensemble (or the one model), ``ood_scores.png`` / ``ood_roc.png``."""
    out = Path(out_dir)
    refuse_run_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    report = summary(result)
    files = ["ood.json", "ood.csv", "ood.md"]
    write_dict_csv_atomic(out / "ood.csv", ROW_COLUMNS, result.rows)
    write_text_atomic(out / "ood.md", to_markdown(result.rows))
    if plots:
        main = result.models[-1]
        title = f"{main.name}: {result.in_dataset} test (in) vs {', '.join(o.name for o in result.out_sets)}"
        auroc = {(r["out"], r["score"]): r["auroc"] for r in result.rows if r["model"] == main.name}
        T.ood_histograms(main.in_scores, main.out_scores, out / "ood_scores.png", in_name=result.in_dataset,
                         auroc=auroc, title=title)
        T.roc_curves(main.in_scores, main.out_scores, out / "ood_roc.png", title=title)
        files += ["ood_scores.png", "ood_roc.png"]
    report["files"] = files
    write_json_atomic(out / "ood.json", report, default=json_default)
    return report


def print_table(result: OodResult) -> None:
    from rich.table import Table

    table = Table(title=f"OOD detection: {result.in_dataset} test (in) vs each out-set; higher is better "
                        f"except FPR@95TPR")
    for column in ("model", "out", "score", "AUROC", "AUPR-In", "AUPR-Out", "FPR@95TPR"):
        table.add_column(column, justify="left" if column in ("model", "out", "score") else "right")
    for r in result.rows:
        table.add_row(r["model"], r["out"], r["score"], f"{r['auroc']:.4f}", f"{r['aupr_in']:.4f}",
                      f"{r['aupr_out']:.4f}", f"{r['fpr_at_95_tpr']:.4f}")
    console().print(table)
