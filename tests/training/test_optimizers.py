"""Muon for the filters + Nesterov SGD for the rest (``optimizer: muon``), and shift test-time augmentation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fmnist.errors import FmnistError
from fmnist.training.module import Classifier
from fmnist.training.optimizers import MuonSGD, orthogonalise, split_for_muon


def test_orthogonalise_pushes_singular_values_towards_one() -> None:
    torch.manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(24, 9))
    v, _ = torch.linalg.qr(torch.randn(9, 9))
    spread = torch.logspace(0, -2, 9)  # singular values from 1 down to 0.01: badly conditioned, as gradients are
    update = (u @ torch.diag(spread) @ v.T).reshape(24, 1, 3, 3)
    after = torch.linalg.svdvals(orthogonalise(update).reshape(24, -1))
    assert after.shape == (9,) and after.min() > 0.5 and after.max() < 1.3  # Newton-Schulz: ~U(0.5, 1.5), not exact
    assert orthogonalise(update).shape == update.shape


def test_filters_take_muon_and_everything_else_sgd() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    net[1].weight.requires_grad_(False)
    filters, others = split_for_muon(net.named_parameters())
    assert [p.shape for p in filters] == [(4, 1, 3, 3)]
    assert [p.shape for p in others] == [(4,), (4,), (10, 2704), (10,)]  # conv bias, BN bias, head


def test_a_muon_step_moves_a_filter_by_an_orthogonal_update_and_others_by_sgd() -> None:
    filt = nn.Parameter(torch.zeros(3, 2))
    bias = nn.Parameter(torch.zeros(3))
    opt = MuonSGD([{"params": [filt], "lr": 0.1, "momentum": 0.5, "muon": True},
                   {"params": [bias], "lr": 0.2, "momentum": 0.5}])
    filt.grad = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    bias.grad = torch.tensor([1.0, -1.0, 0.0])
    opt.step()
    # Nesterov on the first step: grad + momentum * buffer = 1.5 * grad; SGD then moves by lr * that.
    assert torch.allclose(bias, torch.tensor([-0.3, 0.3, 0.0]))
    # Muon: the same directions, orthogonalised (singular values pushed from 1:2 towards 1:1), times the lr and
    # Muon's shape factor sqrt(rows / columns) = sqrt(3 / 2) for this tall matrix.
    moved = -filt.detach() / (0.1 * 1.5 ** 0.5)
    assert moved[0, 1] == 0 and moved[1, 0] == 0 and not moved[2].any()
    assert 0.5 < float(moved[0, 0]) < 1.5 and 0.5 < float(moved[1, 1]) < 1.5
    assert float(moved[1, 1]) / float(moved[0, 0]) < 1.5  # the raw gradient's ratio was 2


def test_muon_is_refused_with_nonsense_settings() -> None:
    with pytest.raises(FmnistError, match="muon_lr must be positive"):
        Classifier("deep", optimizer="muon", muon_lr=0.0)
    with pytest.raises(ValueError, match="MuonSGD needs"):
        MuonSGD([{"params": [nn.Parameter(torch.zeros(2))]}], lr=-1)


def test_the_classifier_builds_muon_groups_for_its_filters() -> None:
    module = Classifier("speedrun", optimizer="muon", lr=0.3, muon_lr=0.2)
    module.trainer = None  # configure_optimizers without a scheduler needs no trainer
    optimizer = module.configure_optimizers()
    muon, sgd = optimizer.param_groups
    assert muon["muon"] and muon["lr"] == 0.2 and all(p.dim() == 4 for p in muon["params"])
    assert not sgd["muon"] and sgd["lr"] == 0.3 and all(p.dim() != 4 for p in sgd["params"])
    trainable = [p for p in module.model.parameters() if p.requires_grad]
    assert len(muon["params"]) + len(sgd["params"]) == len(trainable)


@pytest.mark.parametrize(("flip", "shift", "views"), [(False, 0, 1), (True, 0, 2), (False, 1, 3), (True, 2, 6)])
def test_test_time_views(flip: bool, shift: int, views: int) -> None:
    module = Classifier("deep", flip_tta=flip, tta_shift=shift).eval()
    x = torch.rand(5, 1, 28, 28)
    assert module.test_time_views == views and module.views(x).shape == (5 * views, 1, 28, 28)
    assert module.view_logits(x).shape == (views, 5, 10)
    if shift:  # the shifted views are the image moved by `shift` pixels, up-left and down-right
        stacked = module.views(x).reshape(views, 5, 1, 28, 28)
        up_left, down_right = stacked[views // 3 * 1], stacked[views // 3 * 2]
        assert torch.equal(up_left[..., shift:, shift:], x[..., :28 - shift, :28 - shift])
        assert torch.equal(down_right[..., :28 - shift, :28 - shift], x[..., shift:, shift:])
    module.train()
    assert module.test_time_views == 1 and module.views(x).shape == x.shape


def test_a_negative_shift_is_refused() -> None:
    with pytest.raises(FmnistError, match="tta_shift must be 0"):
        Classifier("deep", tta_shift=-1)


def test_a_speedrun_fit_with_muon_and_shift_tta_trains_and_scores(synthetic_data_dir: str, tmp_path) -> None:
    from fmnist.training.api import fit

    run = fit("speedrun", epochs=4, logdir=tmp_path, overrides={
        "data.data_dir": synthetic_data_dir, "data.batch_size": 64, "model.optimizer": "muon", "model.lr": 0.1,
        "model.tta_shift": 1, "trainer.enable_progress_bar": False, "trainer.precision": "32-true"})
    assert run.metrics["epochs"] == 4 and run.metrics["test_acc"] > 0.3  # 3x chance on 10 synthetic classes (0.67 seen)
    assert run.config["model"]["optimizer"] == "muon"
