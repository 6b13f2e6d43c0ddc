"""Model zoo: every registered architecture builds, has the studies' parameter count and output shape."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from fmnist.catalog import model_info, models_table
from fmnist.errors import FmnistError
from fmnist.models import (
    classic,
    count_parameters,
    count_parameters_keras,
    create_model,
    get_spec,
    list_models,
)

ROOT = Path(__file__).resolve().parents[2]


def conv(c_in: int, c_out: int, k: int = 3, bias: bool = True) -> int:
    """Weights of a ``k x k`` convolution: ``c_out`` filters of ``c_in * k * k`` taps, plus one bias each."""
    return c_out * (c_in * k * k + bias)


def dense(n_in: int, n_out: int, bias: bool = True) -> int:
    return n_out * (n_in + bias)


# Hand counts of the networks whose papers give no figure, from their layer lists (not from the code's totals):
# cnn (study A): conv 1->32, 32->64, 64->128 (3x3, unpadded: 28 -> 26 -> pool 13 -> 11 -> pool 5 -> 3), dense
# 128*3*3 -> 128 -> 10.
CNN = conv(1, 32) + conv(32, 64) + conv(64, 128) + dense(128 * 3 * 3, 128) + dense(128, 10)
# cnn1 (study B, table 1): conv 1->32, 32->64 without pooling (28 -> 26 -> 24), dense 64*24*24 -> 128 -> 10.
CNN1 = conv(1, 32) + conv(32, 64) + dense(64 * 24 * 24, 128) + dense(128, 10)
# vggbn: four bias-free 3x3 convs 1->32->32->64->64, each + BatchNorm (scale and shift: 2 per channel), unpadded
# with a pool after the 2nd and 4th (28 -> 26 -> 24 -> 12 -> 10 -> 8 -> 4); bias-free dense 64*4*4 -> 512 +
# BatchNorm1d(512), dense 512 -> 10. Keras also counts BatchNorm's running mean and variance (2 per channel).
VGGBN_BN_CHANNELS = 32 + 32 + 64 + 64 + 512
VGGBN = (conv(1, 32, bias=False) + conv(32, 32, bias=False) + conv(32, 64, bias=False) + conv(64, 64, bias=False)
         + dense(64 * 4 * 4, 512, bias=False) + dense(512, 10) + 2 * VGGBN_BN_CHANNELS)
# speedrun: a 3x3 whitening stem of 2 * 9 = 18 frozen filters (only its 18 biases train), bias-free 3x3 convs
# 18->24->48->96 each + BatchNorm, a bias-free linear 96 -> 10. Keras' count adds the frozen 18 x 9 stem filters
# and the running statistics of the 24 + 48 + 96 BatchNorm channels.
SPEEDRUN_BN_CHANNELS = 24 + 48 + 96
SPEEDRUN = (18 + conv(18, 24, bias=False) + conv(24, 48, bias=False) + conv(48, 96, bias=False)
            + dense(96, 10, bias=False) + 2 * SPEEDRUN_BN_CHANNELS)

# name -> (trainable parameters, Keras "Total params" = all weights + BatchNorm running mean/var)
EXPECTED_PARAMS = {
    "resnet": (37_898, 38_154),  # study A: 38,154 in Keras' count
    "cnn": (CNN, CNN),
    "scratch": (225_034, 225_034),  # study B: 225,034
    "cnn2": (225_034, 225_034),
    "deep": (94_154, 94_346),  # study B's code: 94,346 in Keras' count
    "cnn3": (94_154, 94_346),
    "cnn1": (CNN1, CNN1),
    "lenet5": (61_706, 61_706),
    "resnet18": (11_181_642, 11_191_242),  # from scratch, whole network (frozen ImageNet backbone: 5,130)
    "transfer": (206_218, 225_034),  # frozen scratch conv base (18,816) + new dense head
    "vggbn": (VGGBN, VGGBN + 2 * VGGBN_BN_CHANNELS),  # our recipe (conv biases dropped: BatchNorm follows every conv)
    "speedrun": (SPEEDRUN, SPEEDRUN + 18 * 9 + 2 * SPEEDRUN_BN_CHANNELS),  # + frozen stem, BatchNorm statistics
}


def test_every_model_is_pinned() -> None:
    assert set(list_models()) == set(EXPECTED_PARAMS)


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_parameter_counts(name: str) -> None:
    model = create_model(name)
    assert (count_parameters(model), count_parameters_keras(model)) == EXPECTED_PARAMS[name]


def test_documented_counts_are_the_hand_counts() -> None:
    """docs/models.md's table and the catalog (``fmnist models``) quote the counts a user reads: they must agree."""
    table = (ROOT / "docs" / "models.md").read_text()
    for name, count in (("cnn", CNN), ("cnn1", CNN1), ("vggbn", VGGBN)):
        assert re.search(rf"^\| `{name}` \| [^|]+ \| {count:,} \|", table, flags=re.M), name
    listing = models_table()
    for name, count in (("cnn", CNN), ("cnn1", CNN1), ("vggbn", VGGBN), ("speedrun", SPEEDRUN)):
        assert model_info(name).params == count, name
        assert re.search(rf"^{name} +{count:,} ", listing, flags=re.M), name


# name -> (class of the layer explanations attach to, its output [channels, grid]): the last layer whose grid is
# still >= 8x8, worked out from each architecture (e.g. cnn: 28 -> conv 26 -> pool 13 -> conv2 11).
TARGET_LAYERS = {
    "resnet": ("ResidualBlock", 32, 14), "cnn": ("Conv2d", 64, 11), "scratch": ("Conv2d", 64, 11),
    "cnn2": ("Conv2d", 64, 11), "deep": ("Conv2d", 64, 11), "cnn3": ("Conv2d", 64, 11), "cnn1": ("Conv2d", 64, 24),
    "lenet5": ("Conv2d", 16, 10), "resnet18": ("Sequential", 64, 8), "transfer": ("Conv2d", 64, 11),
    "vggbn": ("Conv2d", 64, 8), "speedrun": ("Conv2d", 24, 14),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_forward_shape_and_target_layer(name: str) -> None:
    spec = get_spec(name)
    model = create_model(name).eval()
    x = torch.rand(3, spec.channels, spec.input_size, spec.input_size)
    layer = model.get_submodule(spec.target_layer)
    seen: list[tuple[int, ...]] = []
    layer.register_forward_hook(lambda module, inputs, output: seen.append(tuple(output.shape)) and None)
    assert model(x).shape == (3, 10)
    kind, channels, grid = TARGET_LAYERS[name]
    assert (type(layer).__name__, seen) == (kind, [(3, channels, grid, grid)])
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
    assert count_parameters(model) == EXPECTED_PARAMS["deep"][0] - 2 * (32 + 64)  # BatchNorm's scale and shift
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
