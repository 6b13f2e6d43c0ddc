"""EMA of the weights with BatchNorm statistics re-measured, and tests that score the averaged weights."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from fmnist.commands.shims import train_py as main
from fmnist.evaluation.predict import predict_checkpoint
from fmnist.training.module import Classifier
from fmnist.training.weight_averaging import refresh_batch_norm


def _batches(n: int, size: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [(torch.rand(size, 1, 28, 28, generator=generator), torch.randint(0, 10, (size,), generator=generator))
            for _ in range(n)]


def test_refresh_measures_batch_norm_statistics_of_the_current_weights() -> None:
    torch.manual_seed(0)
    module = Classifier("deep", channels_last=False, flip_tta=True).eval()
    bn1 = module.model.features.bn1
    bn1.running_mean.fill_(100.0)  # statistics of some other weights
    batches = _batches(3)
    trainer = SimpleNamespace(train_dataloader=batches + _batches(5),
                              strategy=SimpleNamespace(batch_to_device=lambda batch, dataloader_idx: batch))
    assert refresh_batch_norm(module, trainer, batches=3) == 3
    with torch.no_grad():  # BN1 sees ReLU(conv1(x)): its new running mean is the mean of the three batch means
        features = module.model.features
        means = [features.relu1(features.conv1(x)).mean(dim=(0, 2, 3)) for x, _ in batches]
    assert torch.allclose(bn1.running_mean, torch.stack(means).mean(0), atol=1e-5)
    assert bn1.momentum == 0.1 and not module.training and not bn1.training  # everything put back
    assert all(not m.training for m in module.modules())


def test_deep_config_trains_with_ema_and_tests_the_averaged_weights(synthetic_data_dir: str, tmp_path: Path) -> None:
    args = ["--model", "deep", "--logdir", str(tmp_path), "--data.data_dir", synthetic_data_dir,
            "--data.batch_size", "16", "--epochs", "2", "--trainer.limit_train_batches", "6",
            "--trainer.limit_val_batches", "2", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false"]
    assert main(args) == 0
    run = tmp_path / "deep" / "version_0"
    checkpoint = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    live, averaged = checkpoint["current_model_state"], checkpoint["state_dict"]
    assert not torch.equal(live["model.classifier.fc.weight"], averaged["model.classifier.fc.weight"])
    metrics = json.loads((run / "metrics.json").read_text())
    # The evaluator loads state_dict (the averaged weights); the training run's test must have scored the same.
    report = predict_checkpoint(run, data_dir=synthetic_data_dir)
    accuracy = float((report.probs.argmax(1) == report.labels).mean())
    assert abs(accuracy - metrics["test_acc"]) < 1e-6


def test_warmup_lets_a_short_run_average_follow_the_weights() -> None:
    """Plain EMA at 0.999 still leans on the initial weights after a short run; the warm-up follows the weights."""
    from torch.optim.swa_utils import AveragedModel

    from fmnist.training.weight_averaging import BatchNormEMA

    def distance_after(steps: int, **options: object) -> float:
        torch.manual_seed(0)
        live = torch.nn.Linear(4, 2)
        averaged = AveragedModel(live, **BatchNormEMA(decay=0.999, **options)._kwargs)
        for _ in range(steps):
            with torch.no_grad():
                live.weight.add_(0.01)  # a steady drift, as training makes
            averaged.update_parameters(live)
        return float((averaged.module.weight - live.weight).detach().abs().max())

    # 300 steps of drift 0.01 = 3.0: plain EMA lags by ~2.6 (it has moved ~0.3 of the way), warm-up by < 0.3.
    assert distance_after(300) > 2.0
    assert distance_after(300, warmup=True) < 0.3
    # The first update copies; the second blends with decay (1 + 1) / (10 + 1) instead of 0.999.
    assert distance_after(2, warmup=True) == pytest.approx(0.01 * 2 / 11, rel=1e-3)
    assert distance_after(2) == pytest.approx(0.01 * 0.999, rel=1e-3)
