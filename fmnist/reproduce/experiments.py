"""The experiment table: every piece of both studies (and ours), and the budgets they run under."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fmnist.baselines import BASELINE_NAMES
from fmnist.data.sources import ENV_VAR
from fmnist.errors import FmnistError
from fmnist.ledger import default_ledger
from fmnist.models.classic import imagenet_weights_problem
from fmnist.runs import machine_description

DEFAULT_ROOT = Path("runs") / "reproduce"
PHOTOS_ENV_VAR = "FMNIST_PHOTOS_DIR"  # the labelled development photos (default: <data root>/wild)


@dataclass(frozen=True)
class Budget:
    name: str
    description: str
    epochs: int | None  # None: each config's own max_epochs
    train_subset: int | None  # stratified subset of the 51,000 training images (None: all)
    seeds: tuple[int, ...]
    cv_epochs: int
    cv_patience: int
    baseline_subset: int | None
    results_md: str
    report_dir: str


BUDGETS: dict[str, Budget] = {
    "quick": Budget(
        "quick", "QUICK BUDGET: every CNN on a stratified 10,000-image training subset for 3 epochs "
                 "(2 epochs per CV fold), one seed; baselines fitted on the same 10,000 images. Numbers are "
                 "far below the studies' by design: this budget checks the pipeline, not the accuracy.",
        epochs=3, train_subset=10_000, seeds=(42,), cv_epochs=2, cv_patience=8, baseline_subset=10_000,
        results_md="RESULTS-quick.md", report_dir="docs/results/quick"),
    "full": Budget(
        "full", "FULL BUDGET: the studies' recipe: each model's config in configs/ on all 51,000 training "
                "images (validation 9,000, test 10,000), 3 seeds per CNN; 3-fold CV up to 30 epochs with "
                "early-stopping patience 8; baselines on all 51,000 training images.",
        epochs=None, train_subset=None, seeds=(42, 43, 44), cv_epochs=30, cv_patience=8, baseline_subset=None,
        results_md="RESULTS.md", report_dir="docs/results/full"),
}


@dataclass(frozen=True)
class Experiment:
    name: str
    kind: str  # train | cv | baseline | cross | gradcam | explain | robustness | photos
    title: str
    group: str
    model: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)  # dotted settings on top of the model's config
    optimizer: str | None = None
    needs: tuple[str, ...] = ()
    # configs/<config>.yaml instead of the model's own (a study's recipe kept as an ablation of ours).
    config: str | None = None
    # Why this piece cannot run on this machine (None: it can), asked with the data root just before it would run.
    unavailable: Callable[[str | None], str | None] | None = None

    def describe(self) -> str:
        """What this piece changes on the model's own recipe, for the log."""
        parts = [f"configs/{self.config}.yaml"] if self.config else []
        parts += [f"optimizer {self.optimizer}"] if self.optimizer else []
        parts += [f"{key}={value}" for key, value in self.overrides.items()]
        return ", ".join(parts)


def _imagenet_problem(_data_dir: str | None) -> str | None:
    return imagenet_weights_problem()


CROSS_MODELS = ("scratch", "deep", "transfer")
GRADCAM_MODELS = ("deep", "scratch", "resnet", "vggbn")
# The explanation checks (blank maps, deletion, randomisation) on the first seed of every CNN row.
EXPLAIN_MODELS = ("deep", "scratch", "cnn", "cnn1", "lenet5", "transfer", "resnet", "vggbn", "resnet18-scratch")
# The 215 development photos: each seed of configs/photo.yaml, then deep's first seed for comparison.
PHOTO_MODELS = ("photo", "deep")
# Issue 17's robustness table: each model's budget seeds as one ensemble (members and ensemble side by side);
# every CNN row trained over seeds, so that "the most robust" is named among all of them.
ROBUSTNESS_MODELS = ("deep", "resnet", "vggbn", "cnn", "scratch", "cnn1", "lenet5", "transfer")
ROBUSTNESS_OOD = ("mnist", "noise")

EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment("resnet", "train", "Study A: small ResNet", "Study A CNNs", "resnet"),
    Experiment("cnn", "train", "Study A: 3-conv CNN, deep's recipe", "Study A CNNs", "cnn"),
    Experiment("scratch", "train", "Study B: scratch (= CNN-2), deep's recipe", "Study B CNNs", "scratch"),
    Experiment("deep", "train", "Study B: deep (= CNN-3), BatchNorm + dropout", "Study B CNNs", "deep"),
    Experiment("cnn1", "train", "Study B: CNN-1 (no pooling)", "Study B CNNs", "cnn1"),
    Experiment("lenet5", "train", "LeNet-5", "Study B CNNs", "lenet5"),
    Experiment("transfer", "train", "Study B: transfer from MNIST (frozen base)", "Study B CNNs", "transfer"),
    Experiment("resnet18", "train", "Study B: ResNet18 32x32, ImageNet weights, frozen backbone", "Study B CNNs",
               "resnet18", overrides={"model.model_kwargs": {"pretrained": True, "freeze_backbone": True}},
               unavailable=_imagenet_problem),
    Experiment("resnet18-finetune", "train", "ResNet18 32x32, ImageNet weights, whole network fine-tuned",
               "Study B CNNs", "resnet18",
               overrides={"model.model_kwargs": {"pretrained": True, "freeze_backbone": False}},
               unavailable=_imagenet_problem),
    Experiment("resnet18-scratch", "train", "ResNet18 32x32 from scratch (no ImageNet weights), whole network",
               "Study B CNNs", "resnet18",
               overrides={"model.model_kwargs": {"pretrained": False, "freeze_backbone": False}}),
    Experiment("cnn-study-a", "train", "Study A's recipe as published: 3-conv CNN, 10 epochs", "Ablations", "cnn",
               config="cnn-study-a"),
    Experiment("scratch-study-b", "train", "Study B's recipe as published: scratch, augmentation + Shirt x2",
               "Ablations", "scratch", config="cnn2"),
    Experiment("scratch-sgd", "train", "Adam vs SGD: scratch with SGD (lr 0.01, momentum 0.9)", "Ablations",
               "scratch", optimizer="sgd", config="cnn2"),
    Experiment("deep-no-bn-dropout", "train", "Ablation: deep without BatchNorm and dropout", "Ablations", "deep",
               overrides={"model.model_kwargs": {"batchnorm": False, "dropout": 0.0}}),
    Experiment("deep-shirt-weight", "train", "Class weight: deep with study B's Shirt x2", "Ablations", "deep",
               overrides={"model.class_weights": {6: 2.0}}),
    Experiment("vggbn", "train", "Ours: VGG-style CNN with BatchNorm (our recipe)", "Beyond the studies", "vggbn"),
    Experiment("photo", "train", "Ours for real photos: vggbn with photo-like augmentation (configs/photo.yaml)",
               "Real photos", "vggbn", config="photo"),
    Experiment("cv-scratch", "cv", "3-fold CV: scratch (study B's recipe)", "Cross-validation", "scratch",
               config="cnn2"),
    Experiment("cv-deep", "cv", "3-fold CV: deep", "Cross-validation", "deep"),
    *(Experiment(f"baseline-{b}", "baseline", f"Baseline: {b}", "Baselines", b)
      for b in BASELINE_NAMES),
    Experiment("mnist-cross", "cross", "Cross-dataset: Fashion-MNIST models on MNIST digits", "Cross-dataset",
               needs=CROSS_MODELS),
    Experiment("gradcam", "gradcam", "Grad-CAM gallery", "Grad-CAM", needs=GRADCAM_MODELS),
    Experiment("explain", "explain", "Explanation checks: blank maps, deletion, randomisation", "Grad-CAM",
               needs=EXPLAIN_MODELS),
    Experiment("photos", "photos", "The 215 real phone photos", "Real photos", needs=PHOTO_MODELS,
               unavailable=lambda data_dir: photos_problem(data_dir)),
    Experiment("robustness", "robustness", "Robustness: corruptions, OOD inputs, calibration, seed ensembles",
               "Robustness", needs=ROBUSTNESS_MODELS),
)
BY_NAME = {e.name: e for e in EXPERIMENTS}
GROUP_ALIASES = {"baselines": [e.name for e in EXPERIMENTS if e.kind == "baseline"],
                 "cv": [e.name for e in EXPERIMENTS if e.kind == "cv"],
                 "cnns": [e.name for e in EXPERIMENTS if e.kind == "train"]}


def photos_dir(data_dir: str | None) -> Path | None:
    """Where the labelled development photos are: $FMNIST_PHOTOS_DIR, else ``wild/`` under the data root."""
    if os.environ.get(PHOTOS_ENV_VAR):
        return Path(os.environ[PHOTOS_ENV_VAR])
    root = data_dir or os.environ.get(ENV_VAR)
    return Path(root) / "wild" if root else None


def photos_problem(data_dir: str | None) -> str | None:
    """Why the photo piece cannot run here (None: it can)."""
    folder = photos_dir(data_dir)
    if folder is None or not (folder / "labels.csv").is_file():
        return (f"the labelled development photos are not on this machine (set ${PHOTOS_ENV_VAR}, or "
                f"${ENV_VAR} to a root holding wild/labels.csv)")
    return None


def device_of(gpus: int) -> tuple[str, str]:
    """``(slug, description)`` of where a budget's pieces compute: ``("cpu", "2 CPU cores (...)")`` or a GPU."""
    if gpus and torch.cuda.is_available():
        return "gpu", f"{gpus} x {torch.cuda.get_device_name(0)}"
    return "cpu", machine_description().split(", no GPU")[0].split(", torch")[0]


@dataclass
class Context:
    budget: Budget
    root: Path
    gpus: int
    data_dir: str | None
    log: Callable[[str], None] = print
    ledger: Path = field(default_factory=default_ledger)
    repo: Path = field(default_factory=Path.cwd)
    command: str | None = None

    @property
    def device(self) -> str:
        return device_of(self.gpus)[0]

    @property
    def device_name(self) -> str:
        return device_of(self.gpus)[1]

    def run_name(self, experiment: str, seed: int) -> str:
        return f"{experiment}-s{seed}"

    def run_dir(self, experiment: str, seed: int) -> Path:
        return self.root / self.run_name(experiment, seed) / "version_0"


def robustness_dir(root: Path, model: str) -> Path:
    """Where the robustness piece writes ``model``'s ensemble report (``ensemble.json`` and figures)."""
    return root / "robustness" / model


def get_budget(name: str) -> Budget:
    if name not in BUDGETS:
        raise FmnistError(f"--budget must be one of {', '.join(BUDGETS)}, got {name!r}.")
    return BUDGETS[name]
