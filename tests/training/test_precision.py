"""The default precision: bf16 autocast on CPUs with AMX-BF16, float32 elsewhere, a user's choice kept, and
checkpoints scored in the precision they trained in."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fmnist.data.sources import load_dataset
from fmnist.data.transforms import to_unit_float
from fmnist.evaluation.predict import predict_checkpoint
from fmnist.evaluation.scoring import load_scorer
from fmnist.serialization import read_checkpoint
from fmnist.training import fit
from fmnist.training import precision as precision_module
from fmnist.training.api import Run
from fmnist.training.checkpoints import load_trained
from fmnist.training.precision import cpu_has_bf16_matrix_units, default_precision

# Trimmed /proc/cpuinfo lines of real CPUs: an AMD EPYC Genoa (AVX512-BF16, no AMX), this project's Intel Xeon VM
# of 2026-12-07 (model 207: AVX512-BF16 and -FP16 listed, AMX not exposed), an Intel Skylake-SP (AVX-512, no bf16
# instructions) and a Sapphire Rapids (AMX).
GENOA_FLAGS = "flags\t\t: fpu vme sse sse2 avx2 avx512f avx512dq avx512_bf16 avx512vnni clzero"
XEON_VM_FLAGS = "flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_bf16 avx512_fp16 avx512_vnni avx512_vpopcntdq"
SKYLAKE_FLAGS = "flags\t\t: fpu vme sse sse2 avx2 avx512f avx512dq avx512cd avx512bw avx512vl"
SAPPHIRE_RAPIDS_FLAGS = "flags\t\t: fpu avx512f avx512_fp16 amx_bf16 amx_tile amx_int8"


def cpuinfo(tmp_path: Path, flags_line: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nvendor_id\t: SomeVendor\n{flags_line}\nbogomips\t: 4800.00\n")
    return path


@pytest.mark.parametrize(("flags_line", "amx"), [(SAPPHIRE_RAPIDS_FLAGS, True), (GENOA_FLAGS, False),
                                                 (XEON_VM_FLAGS, False), (SKYLAKE_FLAGS, False),
                                                 ("model name\t: no flags line", False)])
def test_bf16_matrix_units_are_read_from_the_cpu_flags(tmp_path: Path, flags_line: str, amx: bool) -> None:
    assert cpu_has_bf16_matrix_units(cpuinfo(tmp_path, flags_line)) is amx


def test_an_unreadable_cpuinfo_means_no_bf16_matrix_units(tmp_path: Path) -> None:
    assert cpu_has_bf16_matrix_units(tmp_path / "missing") is False


def test_bf16_only_for_cpu_training_on_a_cpu_with_amx(tmp_path: Path) -> None:
    sapphire, xeon_vm = cpuinfo(tmp_path, SAPPHIRE_RAPIDS_FLAGS), tmp_path / "vm"
    xeon_vm.write_text(XEON_VM_FLAGS)
    assert default_precision(True, sapphire) == "bf16-mixed"
    assert default_precision(False, sapphire) == "32-true"  # GPUs keep float32 until bf16 is measured on one
    assert default_precision(True, xeon_vm) == "32-true"  # AVX512-BF16 without AMX: measured not to pay


def _tiny_fit(data_dir: str, logdir: Path, model: str = "deep", epochs: int = 1, resume: bool = False,
              **overrides: object) -> Run:
    return fit(model, seed=7, epochs=epochs, logdir=logdir, resume=resume, overrides={
        "data.data_dir": data_dir, "data.batch_size": 16, "trainer.limit_train_batches": 2,
        "trainer.limit_val_batches": 1, "trainer.enable_progress_bar": False, "trainer.enable_model_summary": False,
        **overrides})


@pytest.mark.parametrize(("flags_line", "expected"), [(SAPPHIRE_RAPIDS_FLAGS, "bf16-mixed"),
                                                      (XEON_VM_FLAGS, "32-true"), (SKYLAKE_FLAGS, "32-true")])
def test_a_cpu_run_without_a_precision_takes_the_machines_default_and_records_it(
        synthetic_data_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags_line: str,
        expected: str) -> None:
    monkeypatch.setattr(precision_module, "CPUINFO", cpuinfo(tmp_path, flags_line))
    metrics = _tiny_fit(synthetic_data_dir, tmp_path / "logs").metrics
    assert metrics["precision"] == expected
    config = (tmp_path / "logs" / "deep" / "version_0" / "config.yaml").read_text()
    assert f"precision: {expected}" in config  # the run's config says how it was trained


def test_a_precision_the_user_sets_is_kept_on_a_cpu_with_amx(
        synthetic_data_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision_module, "CPUINFO", cpuinfo(tmp_path, SAPPHIRE_RAPIDS_FLAGS))
    run = _tiny_fit(synthetic_data_dir, tmp_path, **{"trainer.precision": "32-true"})
    assert run.metrics["precision"] == "32-true"


def test_the_evaluator_scores_a_checkpoint_in_the_precision_it_trained_in(
        synthetic_data_dir: str, tmp_path: Path) -> None:
    """A bf16-trained run's report reproduces its own test (same autocast), and that is not float32's answer."""
    run = _tiny_fit(synthetic_data_dir, tmp_path, "scratch", **{"trainer.precision": "bf16-mixed"})
    trained = load_trained(run.dir)
    assert trained.precision == "bf16-mixed"
    images = load_dataset("fashion", synthetic_data_dir).test_images
    x = trained.transform(to_unit_float(images))
    with torch.no_grad():
        float32 = torch.softmax(trained.module(x), dim=1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16_logits = trained.module(x)
        bf16 = torch.softmax(bf16_logits.float(), dim=1)
    assert not torch.allclose(bf16, float32, atol=1e-5)  # the two precisions do give different numbers here

    pred = predict_checkpoint(run.dir, data_dir=synthetic_data_dir)  # reports, photos (predict_proba)
    assert torch.allclose(torch.as_tensor(pred.probs), bf16, atol=1e-6)
    assert float((pred.probs.argmax(1) == pred.labels).mean()) == pytest.approx(run.metrics["test_acc"], abs=1e-6)
    scored = load_scorer(run.dir, data_dir=synthetic_data_dir).outputs(images.numpy())  # corruptions, OOD, ensembles
    assert torch.allclose(torch.as_tensor(scored.probs), bf16, atol=1e-6)


def test_checkpoints_from_before_the_precision_was_saved_are_scored_in_float32(
        synthetic_data_dir: str, tmp_path: Path) -> None:
    run = _tiny_fit(synthetic_data_dir, tmp_path, "scratch", **{"trainer.precision": "bf16-mixed"})
    old = read_checkpoint(run.checkpoint)
    del old["training_precision"]
    torch.save(old, tmp_path / "old.ckpt")
    assert load_trained(tmp_path / "old.ckpt").precision == "32-true"


@pytest.mark.parametrize(("trained_in", "machine_now"), [("32-true", SAPPHIRE_RAPIDS_FLAGS),
                                                         ("bf16-mixed", SKYLAKE_FLAGS)])
def test_a_resumed_run_keeps_the_precision_it_started_in(
        synthetic_data_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trained_in: str,
        machine_now: str) -> None:
    """A float32 run of before the default (or a bf16 run moved to a CPU without it) does not switch half-way."""
    first = _tiny_fit(synthetic_data_dir, tmp_path, **{"trainer.precision": trained_in})
    monkeypatch.setattr(precision_module, "CPUINFO", cpuinfo(tmp_path, machine_now))
    resumed = _tiny_fit(synthetic_data_dir, tmp_path, epochs=2, resume=True)
    assert resumed.dir == first.dir and resumed.metrics["epochs"] == 2
    assert resumed.metrics["precision"] == trained_in
