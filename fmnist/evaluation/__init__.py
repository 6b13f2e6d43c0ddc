"""Evaluation: predictions from runs and baselines, metrics, the report folder, plots and ``compare``."""

from fmnist.evaluation.metrics import compute_metrics, confusion_matrix, expected_calibration_error
from fmnist.evaluation.predict import evaluate, predict_baseline, predict_checkpoint
from fmnist.evaluation.report import write_report
from fmnist.predictions import Predictions

__all__ = ["Predictions", "compute_metrics", "confusion_matrix", "evaluate", "expected_calibration_error",
           "predict_baseline", "predict_checkpoint", "write_report"]
