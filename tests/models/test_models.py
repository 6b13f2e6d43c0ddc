"""Model zoo: every registered architecture builds, has the studies' parameter count and output shape."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from fmnist.errors import FmnistError
from fmnist.models import (
    classic,
    count_parameters,
    count_parameters_keras,
    create_model,
    get_spec,
    list_models,
)

# name -> (trainable parameters, Keras "Total params" = all weights + BatchNorm running mean/var)
EXPECTED_PARAMS = {
    "resnet": (37_898, 38_154),  # study A: 38,154 in Keras' count
    "cnn": (241_546, 241_546),
    "scratch": (225_034, 225_034),  # study B: 225,034
    "cnn2": (225_034, 225_034),
    "deep": (94_154, 94_346),  # study B's code: 94,346 in Keras' count
    "cnn3": (94_154, 94_346),
    "cnn1": (4_738_826, 4_738_826),
    "lenet5": (61_706, 61_706),
    "resnet18": (11_181_642, 11_191_242),  # from scratch, whole network (frozen ImageNet backbone: 5,130)
    "transfer": (206_218, 225_034),  # frozen scratch conv base (18,816) + new dense head
    "vggbn": (595_626, 597_034),  # our recipe (conv biases dropped: BatchNorm follows every conv)
    "speedrun": (57_042, 57_540),  # issue 14: + the frozen whitening stem (162) and BatchNorm statistics (336)
}


def test_every_model_is_pinned() -> None:
    assert set(list_models()) == set(EXPECTED_PARAMS)


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_parameter_counts(name: str) -> None:
    model = create_model(name)
    assert (count_parameters(model), count_parameters_keras(model)) == EXPECTED_PARAMS[name]


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_forward_shape_and_target_layer(name: str) -> None:
    spec = get_spec(name)
    model = create_model(name).eval()
    x = torch.rand(3, spec.channels, spec.input_size, spec.input_size)
    assert model(x).shape == (3, 10)
    layer = model.get_submodule(spec.target_layer)
    assert isinstance(layer, (nn.Conv2d, nn.Sequential, nn.Module))
    assert not any(isinstance(m, nn.ReLU) and m.inplace for m in model.modules()), "in-place ReLU breaks Captum"


def test_num_classes_and_list_filter() -> None:
    assert create_model("deep", num_classes=3)(torch.rand(2, 1, 28, 28)).shape == (2, 3)
    assert list_models("cnn*") == ["cnn", "cnn2", "cnn3", "cnn1"]


def test_unknown_model_and_bad_option_are_clear() -> None:
    with pytest.raises(FmnistError, match=r"Unknown model 'vgg'; choose one of: .*deep"):
        create_model("vgg")
    with pytest.raises(FmnistError, match="Bad option for model 'deep'"):
        create_model("deep", widht=3)


def test_deep_ablation_drops_batchnorm_and_dropout() -> None:
    model = create_model("deep", batchnorm=False, dropout=0.0)
    assert count_parameters(model) == 94_154 - 2 * (32 + 64)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_transfer_loads_a_pretrained_base_and_freezes_it(tmp_path) -> None:
    source = create_model("scratch")
    torch.save({"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "base.ckpt")
    model = create_model("transfer", base_checkpoint=str(tmp_path / "base.ckpt"))
    for (name, a), b in zip(model.features.state_dict().items(), source.features.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert not any(p.requires_grad for p in model.features.parameters())
    assert all(p.requires_grad for p in model.classifier.parameters())
    unfrozen = create_model("transfer", base_checkpoint=str(tmp_path / "base.ckpt"), freeze_base=False)
    assert count_parameters(unfrozen) == 225_034


def test_transfer_base_errors_are_clear(tmp_path) -> None:
    with pytest.raises(FmnistError, match="does not exist; pretrain it"):
        create_model("transfer", base_checkpoint=str(tmp_path / "missing.ckpt"))
    torch.save({"state_dict": {"model.fc.weight": torch.zeros(1)}}, tmp_path / "wrong.ckpt")
    with pytest.raises(FmnistError, match="does not hold a `scratch` conv base"):
        create_model("transfer", base_checkpoint=str(tmp_path / "wrong.ckpt"))


def test_resnet18_frozen_backbone_keeps_batchnorm_statistics(monkeypatch: pytest.MonkeyPatch) -> None:
    # Study B's protocol freezes ImageNet weights; offline the same network with random weights stands in for them.
    monkeypatch.setattr("fmnist.models.classic.tv_resnet18", lambda weights=None: torchvision.models.resnet18())
    model = create_model("resnet18", pretrained=True, freeze_backbone=True)
    assert count_parameters(model) == 5_130  # only the new 512->10 head trains
    model.train()
    assert not model.features.training and model.classifier.training
    before = model.features.bn1.running_mean.clone()
    model(torch.rand(4, 3, 32, 32) * 5)
    assert torch.equal(before, model.features.bn1.running_mean)


def test_resnet18_refuses_a_frozen_random_backbone() -> None:
    with pytest.raises(FmnistError, match="freeze_backbone=true needs pretrained=true"):
        create_model("resnet18", pretrained=False, freeze_backbone=True)


def test_resnet18_weights_offline_is_one_sentence_and_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("no network (test)")

    monkeypatch.setattr(classic.IMAGENET_WEIGHTS.__class__, "get_state_dict", offline)
    with pytest.raises(FmnistError, match="Could not load ImageNet weights for resnet18 .*pretrained"):
        create_model("resnet18", pretrained=True)
    reason = classic.imagenet_weights_problem()
    assert reason is not None and "no network (test)" in reason
