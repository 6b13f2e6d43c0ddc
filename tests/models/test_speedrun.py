"""The speedrun network: its patch-whitening stem, its shape and options (accuracy: tests/test_accuracy_gate.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from fmnist.errors import FmnistError
from fmnist.models import CATALOG, count_parameters, create_model, get_spec
from fmnist.models.speedrun import PatchWhitening

ROOT = Path(__file__).resolve().parents[2]


def _images(n: int = 64, seed: int = 0) -> torch.Tensor:
    """Correlated, non-centred images (smoothed noise), like real ones and unlike white noise."""
    noise = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    return F.avg_pool2d(noise, 3, stride=1, padding=1) * 0.8 + 0.1


# -- the whitening stem ----------------------------------------------------------------------------------
def test_whitening_stem_decorrelates_patches_and_keeps_both_signs() -> None:
    layer = PatchWhitening(1, kernel_size=3, stride=1).train()
    x = _images()
    layer(x)  # first training batch: fits the filters
    assert bool(layer.fitted)
    with torch.no_grad():
        out = F.conv2d(x, layer.weight, layer.bias)  # every full patch once (no padding)
    half = layer.out_channels // 2
    flat = out[:, :half].permute(0, 2, 3, 1).reshape(-1, half).double()
    assert flat.mean(0).abs().max() < 1e-4  # centred by the bias
    covariance = torch.cov(flat.T, correction=0)
    # channel i has variance lambda_i / (lambda_i + eps) (eigenvalues ascending), and no channels correlate
    eigenvalues = torch.linalg.eigvalsh(torch.cov(F.unfold(x, 3).transpose(1, 2).reshape(-1, 9).double().T,
                                                  correction=0))
    assert torch.allclose(covariance.diagonal(), eigenvalues / (eigenvalues + layer.eps), rtol=1e-4)
    assert covariance.diagonal()[-1] > 0.95  # the strong directions come out at unit variance
    off_diagonal = covariance - torch.diag(covariance.diagonal())
    assert off_diagonal.abs().max() < 1e-6
    assert torch.equal(layer.weight[half:], -layer.weight[:half])


def test_whitening_stem_fits_once_and_only_in_training() -> None:
    layer = PatchWhitening(1, kernel_size=4, stride=2)
    before = layer.weight.clone()
    layer.eval()(_images(seed=1))
    assert not bool(layer.fitted) and torch.equal(layer.weight, before)  # evaluation never fits
    layer.train()(_images(seed=1))
    fitted = layer.weight.clone()
    assert bool(layer.fitted) and not torch.equal(fitted, before)
    layer(_images(seed=2) * 0.5)  # other data later: the filters stay
    assert torch.equal(layer.weight, fitted)
    assert not layer.weight.requires_grad and layer.bias.requires_grad


def test_fitted_stem_travels_with_the_state_dict() -> None:
    torch.manual_seed(0)
    trained = create_model("speedrun").train()
    trained(_images(n=32))
    fresh = create_model("speedrun")
    fresh.load_state_dict(trained.state_dict())
    assert bool(fresh.features.stem.fitted)
    trained.eval(), fresh.eval()
    x = _images(n=8, seed=3)
    assert torch.allclose(trained(x), fresh(x))
    fresh.train()(_images(n=32, seed=5))  # a loaded, fitted stem is not refitted on new data
    assert torch.equal(fresh.features.stem.weight, trained.features.stem.weight)
    # ... and a stem that has fitted once still obeys a later load: an unfitted state makes it fit again
    fresh.load_state_dict(create_model("speedrun").state_dict())
    assert not bool(fresh.features.stem.fitted)
    fresh(_images(n=32, seed=5))
    assert bool(fresh.features.stem.fitted) and fresh.features.stem.weight.abs().sum() > 0


# -- the network -----------------------------------------------------------------------------------------
def test_default_network_shape_parameters_and_registry_entry() -> None:
    spec = get_spec("speedrun")
    model = create_model("speedrun")
    assert spec.target_layer == "features.conv1" and spec.input_size == 28 and spec.channels == 1
    assert model(torch.rand(5, 1, 28, 28)).shape == (5, 10)
    # the stem's 18 x 9 filters are frozen; its 18 biases train
    assert count_parameters(model) == 57_042
    assert count_parameters(model, trainable_only=False) - count_parameters(model) == 18 * 9
    assert CATALOG["speedrun"].params == count_parameters(model)  # what `fmnist models` lists


@pytest.mark.parametrize("options, grids", [
    ({}, {"features.stem": 14, "features.conv1": 14, "features.conv2": 7, "features.conv3": 3}),
    ({"stem_stride": 1}, {"features.stem": 28, "features.conv1": 28, "features.conv2": 14, "features.conv3": 7}),
    ({"depth": 2, "widths": (8, 16, 32)}, {"features.conv1b": 7, "features.conv2b": 3, "features.conv3b": 3}),
])
def test_options_change_the_grid_as_documented(options: dict, grids: dict) -> None:
    model = create_model("speedrun", **options).eval()
    seen: dict[str, int] = {}
    for name, module in model.named_modules():
        if name in grids:
            module.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o.shape[-1]))
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert seen == grids


def test_conv_stem_and_dirac_options() -> None:
    conv = create_model("speedrun", stem="conv", dirac=True, bn_weight=False, activation="gelu")
    assert conv.features.stem.weight.requires_grad and not isinstance(conv.features.stem, PatchWhitening)
    assert not conv.features.bn1.weight.requires_grad and conv.features.bn1.bias.requires_grad
    weight = conv.features.conv2.weight  # 24 -> 48: the first 24 filters pass their input channel through
    assert torch.equal(weight[:24, :, 1, 1], torch.eye(24)) and weight[:24, :, 0, 0].abs().sum() == 0
    assert isinstance(conv.features.act1, torch.nn.GELU)


@pytest.mark.parametrize("options, message", [
    ({"widths": (8, 16)}, "widths must be three"),
    ({"stem": "patchify"}, "stem must be one of whiten, conv"),
    ({"activation": "swish"}, "activation must be one of gelu, relu"),
    ({"stem_stride": 3}, "stem_stride must be 1 or 2"),
    ({"depth": 0}, "depth must be at least 1"),
])
def test_bad_options_are_one_sentence(options: dict, message: str) -> None:
    with pytest.raises(FmnistError, match=message):
        create_model("speedrun", **options)


# -- configs -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["speedrun", "speedrun-93", "speedrun-94"])
def test_recipes_build_their_network_and_say_what_they_target(name: str) -> None:
    config = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
    assert config["model"]["model_name"] == "speedrun"
    assert config["model"]["optimizer"] == "sgd" and config["model"]["nesterov"] is True
    assert config["checkpoint"]["monitor"] is None and config["checkpoint"]["save_on_train_epoch_end"] is True
    model = create_model("speedrun", **(config["model"].get("model_kwargs") or {}))
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


# Its accuracy on the real data is gated in the default suite: tests/test_accuracy_gate.py.
