"""The redesign kept behaviour: a tiny seeded run gives the metrics.json numbers the old flat package gave.

The expected values were measured on the package before the layered layout (commit ef6a887, the same
arguments, the synthetic set of conftest) and are identical after it, bit for bit, on this machine. Another
CPU dispatches other kernels (oneDNN picks AVX-512, AVX2 or SSE code paths), whose sums round differently in the
last bits: with ``ONEDNN_MAX_CPU_ISA=SSE41 ATEN_CPU_CAPABILITY=default`` the losses move by 2e-5 and the weight
fingerprint by 3e-6 (relative). Counts must match exactly; floats within 1e-3 relative, a hundred times those
rounding differences and far below what any change of behaviour (one more step, another seed, another
initialisation) moves them. The numbers are float32's: the run asks for it, since CPUs with AMX-BF16 train in
bf16 autocast by default (fmnist/training/precision.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fmnist.training import fit

BEFORE_REDESIGN = {"test_acc": 0.7699999809265137, "test_loss": 0.9040485620498657, "val_acc": 0.7333333492279053,
                   "val_loss": 0.9022995829582214, "initial_weight_fingerprint": 175.0958682486124,
                   "final_weight_fingerprint": 177.12015608303682, "epochs": 2, "best_epoch": 2, "n_train": 510,
                   "n_val": 90}


def test_tiny_seeded_deep_run_matches_the_pre_redesign_numbers(synthetic_data_dir: str, tmp_path: Path) -> None:
    run = fit("deep", seed=7, epochs=2, logdir=tmp_path, overrides={
        "data.data_dir": synthetic_data_dir, "data.batch_size": 16, "trainer.precision": "32-true",
        "trainer.limit_train_batches": 4,
        "trainer.limit_val_batches": 2, "trainer.limit_test_batches": 2, "trainer.enable_progress_bar": False,
        "trainer.enable_model_summary": False})
    assert run.dir == tmp_path / "deep" / "version_0" and run.checkpoint is not None and run.checkpoint.is_file()
    written = json.loads((run.dir / "metrics.json").read_text())
    assert written == run.metrics
    for key, value in BEFORE_REDESIGN.items():
        if isinstance(value, int):
            assert written[key] == value, key
        else:
            assert written[key] == pytest.approx(value, rel=1e-3), key
