"""Every published figure ours are set beside, in one place: study A, study B, the benchmark, the literature.

Sources: ../shared/SPEC.md and the two source documents in ../shared/seeds/ (the studies), the
Fashion-MNIST paper (arXiv:1708.07747, Table 3) and its benchmark README. Nothing here is measured by us.
"""

from __future__ import annotations

# Published Fashion-MNIST test accuracy of the same model in the source studies (SPEC.md).
PUBLISHED: dict[str, float] = {
    "resnet": 0.91, "cnn": 0.91, "logreg": 0.83, "svm": 0.87, "rf": 0.89, "knn": 0.85, "mlp": 0.85,
    "scratch": 0.902, "deep": 0.913, "transfer": 0.869, "resnet18": 0.881, "lenet5": 0.85,
}
# Study B's cross-dataset test: a Fashion-MNIST model scored on the MNIST test digits.
PUBLISHED_MNIST_CROSS: dict[str, float] = {"transfer": 0.126, "scratch": 0.129, "deep": 0.101}
# Fashion-MNIST benchmark (arXiv:1708.07747 Table 3), best setting of each classical model.
BENCHMARK: dict[str, float] = {"svm": 0.897, "rf": 0.873, "mlp": 0.871, "knn": 0.854, "logreg": 0.842}

# How each study states its figure (the results page's text); experiments that are not a plain run carry
# their own figure in STUDY_OWN_FIGURE.
STUDY_TEXT: dict[str, str] = {
    "resnet": "study A: 91% (20 epochs)",
    "cnn": "study A: 91% (10 epochs)",
    "scratch": "study B: 90.2-91.1%",
    "deep": "study B: 91.3-91.7%",
    "cnn1": "study B: not reported",
    "lenet5": "study B: ~85% (preliminary tests)",
    "transfer": "study B: 86.9-89.1%",
    "resnet18": "study B: 88.1% (ImageNet weights)",
    "resnet18-finetune": "study B: not run (frozen only)",
    "resnet18-scratch": "study B: 88.1% with ImageNet weights (frozen)",
    "cnn-study-a": "study A: 91% (10 epochs)",
    "scratch-study-b": "study B: 90.2-91.1%",
    "scratch-sgd": "study B: 93.9% (its own, inconsistent scale); 15/15 epochs vs Adam 4/15",
    "deep-no-bn-dropout": "study B: val 88.9% (vs 91.3% with BN + dropout)",
    "vggbn": "ours; goal >= 93.5%",
    "cv-scratch": "study B: 90.6% (90.6 / 90.9 / 90.4)",
    "cv-deep": "study B: 90.9% (90.4 / 91.1 / 91.2)",
    "baseline-logreg": "study A: 83%",
    "baseline-svm": "study A: ~87%",
    "baseline-rf": "study A: 89%",
    "baseline-knn": "study A: ~85%",
    "baseline-mlp": "study A: 85%",
}
STUDY_OWN_FIGURE: dict[str, float] = {"cnn-study-a": 0.91, "scratch-study-b": 0.902, "scratch-sgd": 0.939,
                                      "deep-no-bn-dropout": 0.889, "cv-scratch": 0.906, "cv-deep": 0.909}
RESNET18_ANCHOR = (0.949, "ResNet18 + augmentation (its submitter's repo: 92.0%)")
# Published Fashion-MNIST anchors of the CNNs (SPEC.md: study B's table and the benchmark README); the
# baselines' anchor is the benchmark figure in BENCHMARK above.
ANCHOR: dict[str, tuple[float, str]] = {
    "resnet": (0.947, "CNN with shortcuts + random erasing"),
    "cnn": (0.916, "2 Conv + pooling"),
    "scratch": (0.916, "2 Conv + pooling"),
    "cnn-study-a": (0.916, "2 Conv + pooling"),
    "scratch-study-b": (0.916, "2 Conv + pooling"),
    "deep": (0.934, "2 Conv + pooling + BN"),
    "lenet5": (0.9018, "LeNet-5 (study B's table)"),
    "resnet18": RESNET18_ANCHOR,
    "resnet18-finetune": RESNET18_ANCHOR,
    "resnet18-scratch": RESNET18_ANCHOR,
    "vggbn": (0.934, "2 Conv + pooling + BN"),
}
BENCHMARK_TEXT = {"logreg": "LogisticRegression", "svm": "SVC(C=10)", "rf": "RandomForest", "knn": "KNeighbors",
                  "mlp": "MLPClassifier"}

# Robustness anchors (issue 17): google/uncertainty-baselines' Fashion-MNIST LeNet-5 and its 10-model ensemble
# (accuracy, NLL, calibration error), and DUQ's OOD AUROC (van Amersfoort et al. 2020, Fashion-MNIST in vs MNIST out).
ROBUSTNESS_ANCHORS: tuple[dict[str, object], ...] = (
    {"name": "LeNet-5 (uncertainty-baselines)", "n": 1, "accuracy": 0.910, "nll": 0.321},
    {"name": "LeNet-5 x10 ensemble (uncertainty-baselines)", "n": 10, "accuracy": 0.932, "nll": 0.200, "ece": 0.010},
    {"name": "DUQ (van Amersfoort et al. 2020)", "n": 1, "auroc_mnist": 0.955},
)
