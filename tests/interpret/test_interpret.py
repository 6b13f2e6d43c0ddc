"""Grad-CAM and friends (fmnist.interpret): every registered CNN, layer choice, Captum pitfalls, region sanity, CLI."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from region_task import SIGNAL, RegionModel, trained_region_model
from torch import nn

from fmnist.commands.shims import evaluate_py as main
from fmnist.data.transforms import InputTransform
from fmnist.errors import FmnistError
from fmnist.interpret.gradcam import attribute, grad_cam
from fmnist.interpret.layers import (
    MIN_GRID,
    aligned_upsample,
    default_layer,
    layer_geometry,
    output_grids,
    resolve_layer,
)
from fmnist.interpret.measures import mass_in
from fmnist.interpret.methods import DEFAULT_METHOD, METHODS
from fmnist.models import create_model, get_spec, list_models
from fmnist.models.base import FeatureClassifier


@pytest.fixture
def region_model() -> RegionModel:
    return trained_region_model()


ISSUE_MODELS = {"resnet", "cnn", "scratch", "deep", "cnn1", "cnn2", "cnn3", "lenet5", "resnet18", "transfer"}


def _images(n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def test_issue_models_are_registered() -> None:
    assert set(list_models()) >= ISSUE_MODELS


@pytest.mark.parametrize("method", sorted({"gradcam", DEFAULT_METHOD}))
@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_gets_maps_at_its_registry_layer(name: str, method: str) -> None:
    torch.manual_seed(0)
    spec = get_spec(name)
    model = create_model(name).train()  # attribution must switch to eval and give the mode back
    transform = InputTransform(image_size=spec.input_size, channels=spec.channels)
    result = attribute(model, _images(), method=method, transform=transform, model_name=name)
    assert result.layer == spec.target_layer and result.method == method
    assert result.maps.shape == (3, 28, 28)  # back on the 28x28 input grid, also for resnet18's 32x32
    assert torch.isfinite(result.maps).all() and (result.maps >= 0).all()
    assert torch.allclose(result.probs.sum(dim=1), torch.ones(3), atol=1e-5)
    assert torch.equal(result.targets, result.probs.argmax(dim=1))
    assert model.training


@pytest.mark.parametrize("name", list_models())
def test_registry_layers_follow_the_resolution_rule(name: str) -> None:
    """The registry records, per model, the last layer whose grid is >= 8x8; the rule and the table agree."""
    model = create_model(name)
    grids = output_grids(model, name)  # in the order the layers finish
    layer = get_spec(name).target_layer
    assert layer == default_layer(model, name)
    assert min(grids[layer]) >= MIN_GRID
    later = list(grids)[list(grids).index(layer) + 1:]
    assert all(min(grids[other]) < MIN_GRID for other in later)


def test_residual_models_are_explained_after_the_skip_connection() -> None:
    """A residual block's last conv sees only the branch; the block's output carries the skip connection too."""
    assert default_layer(create_model("resnet"), "resnet") == "features.block1"  # 14x14; block2 is 7x7
    assert default_layer(create_model("resnet18"), "resnet18") == "features.layer1"  # 8x8; layer2 is 4x4


def test_default_layer_skips_the_3x3_grid_of_the_unpadded_cnns() -> None:
    deep = create_model("deep")
    assert output_grids(deep, "deep") == {"features.conv1": (26, 26), "features.conv2": (11, 11),
                                          "features.conv3": (3, 3)}
    assert default_layer(deep, "deep") == "features.conv2"
    assert default_layer(deep, "deep", min_grid=2) == "features.conv3"
    assert default_layer(deep, "deep", min_grid=30) == "features.conv1"  # none that large: the largest grid


def test_resolution_rule_is_the_fallback_for_unregistered_models() -> None:
    model = create_model("cnn")
    name, module = resolve_layer(model)  # no registry name
    assert name == "features.conv2" and module is model.features.conv2


def test_model_without_conv_is_a_clear_error() -> None:
    mlp = FeatureClassifier(nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU()), nn.Linear(32, 10))
    with pytest.raises(FmnistError, match="no convolutional layer"):
        grad_cam(mlp, _images(), model_name="mlp")


def test_layer_override_accepts_the_network_prefix_and_rejects_unknown_or_flat_layers() -> None:
    model = create_model("deep")
    assert resolve_layer(model, "deep", "features.conv2")[0] == "features.conv2"
    assert resolve_layer(model, "deep", "1.features.conv2")[0] == "features.conv2"  # TrainedModel.network naming
    with pytest.raises(FmnistError, match=r"no layer 'features\.conv9'.*features\.conv3"):
        resolve_layer(model, "deep", "features.conv9")
    with pytest.raises(FmnistError, match="no spatial output"):
        grad_cam(model, _images(), model_name="deep", layer="classifier.fc")
    result = grad_cam(model, _images(), model_name="deep", layer="1.features.conv1")
    assert result.layer == "features.conv1" and result.maps.shape == (3, 28, 28)


def test_in_place_relus_give_the_same_maps_and_are_restored() -> None:
    torch.manual_seed(0)
    plain = create_model("cnn").eval()
    inplace = copy.deepcopy(plain)
    relus = [m for m in inplace.modules() if isinstance(m, nn.ReLU)]
    for relu in relus:
        relu.inplace = True
    expected = grad_cam(plain, _images(4), model_name="cnn", target=3)
    got = grad_cam(inplace, _images(4), model_name="cnn", target=3)
    assert torch.allclose(got.maps, expected.maps, atol=1e-6)
    assert all(relu.inplace for relu in relus)


def test_runs_in_eval_mode_without_touching_batchnorm_and_restores_train_mode() -> None:
    torch.manual_seed(0)
    model = create_model("deep").train()  # dropout 0.5 + BatchNorm
    before = model.features.bn1.running_mean.clone()
    first = grad_cam(model, _images(4), model_name="deep", target=1)
    second = grad_cam(model, _images(4), model_name="deep", target=1)
    assert torch.equal(first.maps, second.maps)  # no dropout noise
    assert torch.equal(model.features.bn1.running_mean, before)  # BN statistics not updated
    assert model.training and model.features.bn1.training


def test_works_under_inference_mode_like_a_lightning_test_loop() -> None:
    model = create_model("scratch")
    with torch.inference_mode():
        images = _images()  # an inference tensor, as Lightning's predict loop hands out
        result = grad_cam(model, images, model_name="scratch")
    assert result.maps.shape == (3, 28, 28)


def test_layer_geometry_follows_kernels_strides_and_padding() -> None:
    assert layer_geometry(create_model("deep"), "features.conv3") == ((4.0, 8.5), (4.0, 8.5))
    assert layer_geometry(create_model("scratch"), "features.conv2") == ((2.0, 3.5), (2.0, 3.5))
    assert layer_geometry(create_model("resnet"), "features.block2.conv2") is None  # residual: stretched instead
    # LeNet-5 averages (no max-pool argmax), so a cell's input gradient covers exactly its receptive field.
    model = create_model("lenet5").eval()
    (scale, offset), _ = layer_geometry(model, "features.conv2")
    captured = {}
    model.features.conv2.register_forward_hook(lambda module, args, out: captured.update(out=out))
    x = torch.rand(1, 1, 28, 28, requires_grad=True)
    model(x)
    (grad,) = torch.autograd.grad(captured["out"][0, :, 5, 5].sum(), x)
    rows = torch.nonzero(grad[0, 0].abs().sum(dim=1)).flatten()
    assert (rows.min() + rows.max()) / 2 == scale * 5 + offset == 14.5


def test_aligned_maps_land_on_the_cells_centres() -> None:
    geometry = ((4.0, 8.5), (4.0, 8.5))  # deep's conv3: 3x3 cells centred on pixels 8.5, 12.5, 16.5
    one_hot = torch.zeros(1, 1, 3, 3)
    one_hot[0, 0, 1, 1] = 1.0
    centre = aligned_upsample(one_hot, geometry, (28, 28))[0, 0]
    peak = divmod(int(centre.argmax()), 28)
    assert peak[0] in (12, 13) and peak[1] in (12, 13)
    corner = torch.zeros(1, 1, 3, 3)
    corner[0, 0, 2, 2] = 1.0
    upsampled = aligned_upsample(corner, geometry, (28, 28))[0, 0]
    assert upsampled[20, 20] > 0.5 > upsampled[16, 16] > upsampled[12, 12] and upsampled[8, 8] < 0.01
    assert grad_cam(create_model("deep"), _images(), model_name="deep").aligned
    assert not grad_cam(create_model("resnet"), _images(), model_name="resnet").aligned


def test_explicit_targets_one_for_all_or_one_per_image() -> None:
    model = create_model("cnn")
    assert grad_cam(model, _images(), model_name="cnn", target=7).targets.tolist() == [7, 7, 7]
    assert grad_cam(model, _images(), model_name="cnn", target=[1, 2, 3]).targets.tolist() == [1, 2, 3]
    with pytest.raises(FmnistError, match="out of range"):
        grad_cam(model, _images(), model_name="cnn", target=10)


@pytest.mark.parametrize("method", list(METHODS))
def test_sanity_mass_sits_where_the_class_signal_is(region_model, method: str) -> None:
    """Fails when the map is meaningless: uniform maps put 25% in the signal quadrant, flipped ones ~0%."""
    assert region_model.accuracy > 0.95
    positives = region_model.x_test[region_model.y_test == 1]
    result = attribute(region_model.model, positives, method=method, model_name="scratch", target=1)
    share = mass_in(result.maps, SIGNAL)
    assert share.isnan().float().mean() < 0.2  # (almost) every map has positive mass
    share = share[~share.isnan()]
    assert share.mean() > 0.6 and share.median() > 0.6
    assert mass_in(result.maps.transpose(-1, -2), SIGNAL).nanmean() < 0.3  # the test can fail


# -- the command line --------------------------------------------------------------------------------------


def test_cli_default_selection_writes_a_grid(cnn_checkpoint: Path, synthetic_data_dir: str,
                                                       tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "gc"
    argv = ["gradcam", str(cnn_checkpoint), "--data-dir", synthetic_data_dir, "--out", str(out), "--no-single"]
    assert main(argv) == 0
    assert (out / "gradcam_grid.png").stat().st_size > 1000
    assert not list(out.glob("gradcam_test_*.png"))
    table = capsys.readouterr().out
    assert "features.conv2" in table and "HiResCAM" in table
    rows = [line for line in table.splitlines() if line.startswith("│")]
    assert len(rows) >= 10  # one correct (+ one wrong, where there is one) per class


def test_cli_index_class_and_layer(cnn_checkpoint: Path, synthetic_data_dir: str, tmp_path: Path) -> None:
    out = tmp_path / "gc"
    argv = ["gradcam", str(cnn_checkpoint), "--data-dir", synthetic_data_dir, "--out", str(out),
            "--index", "0", "5", "--class", "Trouser", "--layer", "1.features.conv2"]
    assert main(argv) == 0
    assert sorted(p.name for p in out.glob("gradcam_test_*.png")) == ["gradcam_test_00000.png",
                                                                     "gradcam_test_00005.png"]


def test_cli_method_option(cnn_checkpoint: Path, synthetic_data_dir: str, tmp_path: Path,
                           capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "gc"
    argv = ["gradcam", str(cnn_checkpoint), "--data-dir", synthetic_data_dir, "--out", str(out), "--index", "3",
            "--method", "occlusion"]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "Occlusion of cnn" in table and "pixel-level" in table
    assert (out / "gradcam_test_00003.png").stat().st_size > 1000


@pytest.mark.parametrize(("extra", "message"), [
    (["--index", "100000"], "--index 100000 is out of range"),
    (["--class", "Hat"], "--class 'Hat' is not a class"),
    (["--layer", "features.nope"], "no layer 'features.nope'"),
])
def test_cli_user_mistakes_are_one_line_errors(cnn_checkpoint: Path, synthetic_data_dir: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture, extra: list[str], message: str) -> None:
    argv = ["gradcam", str(cnn_checkpoint), "--data-dir", synthetic_data_dir, "--out", str(tmp_path), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
