"""Temperature scaling (Guo et al., ICML 2017): one scalar ``T`` that makes a model's confidences honest.

``T`` is fitted on the run's own validation split by minimising the negative log-likelihood of
``softmax(z / T)`` and saved with the run as ``temperature.json`` (next to ``metrics.json``; for a bare
checkpoint ``<stem>.temperature.json`` beside it, for a baseline beside its fitted estimator). Other
commands apply it on request (``--temperature``). Dividing logits by ``T`` never changes the argmax,
so accuracy is untouched; NLL and ECE are reported before and after.

The logits are taken as ``log p``: softmax ignores a per-row constant, so ``softmax(log p / T)``
equals ``softmax(z / T)`` for any network, and the same code scales a baseline's probabilities.
The one-dimensional fit reuses the baselines' ``fit_temperature`` (bounded Brent search on ``log T``,
the global minimum of this convex-in-``1/T`` problem).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np

from fmnist import baselines as B
from fmnist.errors import FmnistError
from fmnist.evaluation.metrics import DEFAULT_BINS, compute_metrics
from fmnist.evaluation.predict import evaluate
from fmnist.files import write_json_atomic
from fmnist.predictions import Predictions, json_default
from fmnist.serialization import read_json_capped
from fmnist.terminal import console

TEMPERATURE_FILE = "temperature.json"
_TINY = float(np.finfo(np.float32).tiny)


# -- the transform -----------------------------------------------------------------------------------
def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, returned as float32."""
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def log_probs(probs: np.ndarray) -> np.ndarray:
    """``log p`` (zeros floored at float32's smallest normal): logits up to a per-row constant."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), _TINY, None))


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)``: the probabilities the same logits give at temperature ``T``."""
    _check_temperature(temperature)
    if len(probs) == 0:
        return np.asarray(probs, dtype=np.float32)
    return softmax(log_probs(probs) / temperature)


def apply_temperature(pred: Predictions, temperature: float) -> Predictions:
    """A copy of ``pred`` with temperature-scaled probabilities (``meta['temperature']`` records ``T``)."""
    return dataclasses.replace(pred, probs=temper(pred.probs, temperature),
                               meta={**pred.meta, "temperature": float(temperature)})


def fit_temperature(pred: Predictions) -> float:
    """The ``T`` minimising the NLL of ``softmax(log p / T)`` on ``pred`` (use a validation split)."""
    if pred.n < 2:
        raise FmnistError(f"cannot fit a temperature on {pred.n} predictions; a validation split is needed.")
    return B.fit_temperature(log_probs(pred.probs), pred.labels)


def _check_temperature(temperature: float) -> None:
    if not np.isfinite(temperature) or temperature <= 0:
        raise FmnistError(f"a temperature must be a positive number, got {temperature!r}.")


def headline_scores(pred: Predictions, n_bins: int = DEFAULT_BINS) -> dict[str, float]:
    """Accuracy, NLL, ECE and mean confidence of ``pred`` (the evaluator's own numbers)."""
    m = compute_metrics(pred, n_bins=n_bins, top_k=())
    return {"accuracy": m["accuracy"], "nll": m["nll"], "ece": m["ece"], "mean_confidence": m["mean_confidence"],
            "n": m["n"]}


def before_after(pred: Predictions, temperature: float, n_bins: int = DEFAULT_BINS) -> dict[str, dict[str, float]]:
    """``{"before": scores, "after": scores}`` of ``pred`` without and with temperature ``T``."""
    return {"before": headline_scores(pred, n_bins), "after": headline_scores(apply_temperature(pred, temperature), n_bins)}


# -- saved with the run ------------------------------------------------------------------------------
def temperature_file(meta: dict[str, Any]) -> Path:
    """Where a model's temperature lives, from its predictions' ``meta`` (run folder, checkpoint or estimator)."""
    if meta.get("run_dir"):
        return Path(meta["run_dir"]) / TEMPERATURE_FILE
    if meta.get("checkpoint"):
        checkpoint = Path(meta["checkpoint"])
        return checkpoint.with_name(f"{checkpoint.stem}.{TEMPERATURE_FILE}")
    if meta.get("artifact"):
        return Path(meta["artifact"]).with_suffix(f".{TEMPERATURE_FILE}")
    raise FmnistError("this model has no run folder, checkpoint or saved estimator to keep a temperature with.")


def _fingerprint(meta: dict[str, Any]) -> str | None:
    """sha256 of the weights file the temperature belongs to (a retrained run must be recalibrated)."""
    source = meta.get("checkpoint") or meta.get("artifact")
    if not source or not Path(source).is_file():
        return None
    digest = hashlib.sha256()
    with Path(source).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_temperature(meta: dict[str, Any], record: dict[str, Any]) -> Path:
    """Write ``record`` (with the weights' fingerprint) to :func:`temperature_file` ``(meta)``."""
    path = temperature_file(meta)
    _check_temperature(record["temperature"])
    record = {**record, "weights_sha256": _fingerprint(meta), "weights": meta.get("checkpoint") or meta.get("artifact")}
    return write_json_atomic(path, record, default=json_default)


def read_temperature(meta: dict[str, Any], name: str = "this model") -> dict[str, Any]:
    """The saved record, checked: present, a positive ``temperature``, fitted for these very weights."""
    path = temperature_file(meta)
    if not path.is_file():
        raise FmnistError(f"{name} has no saved temperature ({path} is missing); fit one first with "
                          f"`python evaluate.py calibrate {meta.get('run_dir') or meta.get('checkpoint') or name}`.")
    try:
        record = read_json_capped(path)
        temperature = float(record["temperature"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FmnistError(f"{path} is not a temperature file written by `evaluate.py calibrate` ({exc}); "
                          f"delete it and calibrate again.") from None
    _check_temperature(temperature)
    expected = _fingerprint(meta)
    if expected and record.get("weights_sha256") and record["weights_sha256"] != expected:
        raise FmnistError(f"{path} was fitted for other weights than {record.get('weights')} holds now (retrained?); "
                          f"run `python evaluate.py calibrate` on it again.")
    return record


def load_temperature(meta: dict[str, Any], name: str = "this model") -> float:
    """The saved temperature of a model (see :func:`read_temperature`)."""
    return float(read_temperature(meta, name)["temperature"])


# -- fit, save, report -------------------------------------------------------------------------------
def calibrate(target: Any, *, data_dir: str | None = None, device: str = "cpu", n_bins: int = DEFAULT_BINS,
              save: bool = True, **baseline_options: Any) -> tuple[dict[str, Any], Predictions]:
    """Fit ``T`` on ``target``'s validation split, save it with the run, and score val and test before/after.

    Returns the record (``temperature``, ``val`` and ``test`` before/after) and the test predictions.
    """
    val = evaluate(target, split="val", data_dir=data_dir, device=device, **baseline_options)
    started = time.perf_counter()
    temperature = fit_temperature(val)
    fit_seconds = time.perf_counter() - started
    test = evaluate(target, split="test", data_dir=data_dir, device=device, **baseline_options)
    record = {
        "temperature": temperature, "model": val.model, "run": val.meta.get("run") or val.model,
        "method": "temperature scaling (Guo et al. 2017): NLL of softmax(log p / T) minimised over log T",
        "fitted_on": {"dataset": val.dataset, "split": "val", "n": val.n}, "fit_seconds": round(fit_seconds, 4),
        "calibration_bins": n_bins, "val": before_after(val, temperature, n_bins),
        "test": before_after(test, temperature, n_bins), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if save:
        record["file"] = str(save_temperature(val.meta, record))
    return record, test


def print_record(record: dict[str, Any]) -> None:
    """Before/after table of one calibration."""
    from rich.table import Table

    table = Table(title=f"{record['run']}: temperature T = {record['temperature']:.4f} (fitted on "
                        f"{record['fitted_on']['n']:,} validation images)")
    for column in ("split", "accuracy", "NLL before", "NLL after", "ECE before", "ECE after"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for split in ("val", "test"):
        b, a = record[split]["before"], record[split]["after"]
        table.add_row(split, f"{b['accuracy']:.4f}", f"{b['nll']:.4f}", f"{a['nll']:.4f}", f"{b['ece']:.4f}",
                      f"{a['ece']:.4f}")
    console().print(table)
