"""The methods of fmnist.interpret.methods: each computes what its paper defines, and blank maps are counted and shown."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fmnist.errors import FmnistError
from fmnist.figures.explanations import BLANK_TEXT, Explained, explained_items, grid_figure
from fmnist.interpret.gradcam import attribute
from fmnist.interpret.layers import aligned_upsample, layer_geometry
from fmnist.interpret.measures import blank_maps, garment_mask, summarize_maps
from fmnist.interpret.methods import METHODS, get_method
from fmnist.models import create_model
from fmnist.models.base import FeatureClassifier


def _images(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


class RegionScore(nn.Module):
    """Logit 1 = 2 x the sum of the pixels in rows 4-11, columns 16-23; logit 0 = 0. Occlusion and IG know the answer."""

    def __init__(self) -> None:
        super().__init__()
        weight = torch.zeros(28, 28)
        weight[4:12, 16:24] = 2.0
        self.register_buffer("weight", weight)
        self.conv = nn.Conv2d(1, 1, 1)  # gives the module a parameter (device) and a conv layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (x[:, 0] * self.weight).flatten(1).sum(dim=1)
        return torch.stack([torch.zeros_like(score), score], dim=1) + 0 * self.conv(x).sum()


def test_unknown_method_is_one_sentence() -> None:
    with pytest.raises(FmnistError, match="unknown explanation method 'lime'; choose one of: gradcam, hirescam"):
        get_method("lime")


def test_hirescam_is_cam_for_a_global_average_pooling_network() -> None:
    """deep ends conv3 -> ReLU -> GAP -> (dropout) -> fc: HiResCAM there is CAM = sum_k w_k ReLU(A_k) / cells."""
    torch.manual_seed(0)
    model = create_model("deep").eval()
    x = _images(3)
    with torch.no_grad():
        activations = model.features(x)  # [N, 128, 3, 3] after relu3
        target = model(x).argmax(dim=1)
    weights = model.classifier.fc.weight[target]  # [N, 128]
    cam = (weights[:, :, None, None] * activations).sum(dim=1, keepdim=True).clamp_min(0) / 9
    expected = aligned_upsample(cam, layer_geometry(model, "features.conv3"), (28, 28))[:, 0]
    result = attribute(model, x, method="hirescam", model_name="deep", layer="features.conv3")
    assert torch.allclose(result.maps, expected, atol=1e-5, rtol=1e-4)
    assert result.aligned and result.layer == "features.conv3"


def test_gradcam_and_hirescam_differ_where_gradients_vary_over_the_grid() -> None:
    torch.manual_seed(0)
    model = create_model("deep").eval()
    grad_cam = attribute(model, _images(), method="gradcam", model_name="deep").maps
    hires = attribute(model, _images(), method="hirescam", model_name="deep").maps
    assert not torch.allclose(grad_cam, hires, atol=1e-4)


def test_guided_gradcam_vanishes_where_gradcam_does() -> None:
    torch.manual_seed(0)
    model = create_model("cnn").eval()
    x = _images(6)
    cam = attribute(model, x, method="gradcam", model_name="cnn").maps
    guided = attribute(model, x, method="guided-gradcam", model_name="cnn").maps
    assert (guided[cam == 0] == 0).all()
    assert guided.shape == (6, 28, 28) and (guided >= 0).all()


def test_occlusion_and_ig_find_the_planted_region() -> None:
    model = RegionScore()
    x = _images(3)
    ig = attribute(model, x, method="ig", target=1)
    assert ig.layer is None and ig.method == "ig"
    # IG of a linear score from the black image is exactly input x weight (completeness, no approximation).
    assert torch.allclose(ig.maps, x[:, 0] * model.weight, atol=1e-4)
    occlusion = attribute(model, x, method="occlusion", target=1).maps
    outside = torch.ones(28, 28, dtype=torch.bool)
    outside[2:14, 14:26] = False  # region +- the 4x4 window's reach
    assert (occlusion[:, outside] == 0).all() and (occlusion[:, 4:12, 16:24] > 0).all()


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_on_a_trained_checkpoint_like_network(method: str) -> None:
    torch.manual_seed(0)
    model = create_model("cnn")
    result = attribute(model, (_images(3) * 255).to(torch.uint8), method=method, model_name="cnn")
    assert result.maps.shape == (3, 28, 28) and (result.maps >= 0).all() and torch.isfinite(result.maps).all()
    assert (result.layer is None) == (not METHODS[method].uses_layer)


def _dead_model() -> nn.Module:
    """A CNN whose last conv feeds the head only through a ReLU of negative values: every CAM is all zero."""
    torch.manual_seed(0)
    model = FeatureClassifier(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()),
                              nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)))
    with torch.no_grad():
        model.features[0].weight.fill_(-1.0)
        model.features[0].bias.fill_(-1.0)
    return model.eval()


def test_blank_maps_are_counted_and_drawn_as_blank() -> None:
    model = _dead_model()
    x = _images(5)
    result = attribute(model, x, method="gradcam")
    assert result.blank.all() and blank_maps(result.maps).tolist() == [True] * 5
    summary = summarize_maps(result.maps, x)
    assert summary["blank"] == 5 and summary["blank_rate"] == 1.0 and summary["garment_mass_share"] is None
    items = explained_items(result, x, ["a", "b"])
    assert all(item.blank for item in items)
    figure = grid_figure(items, per_row=5)
    heatmap_panels = figure.axes[1::3]
    assert all(any(t.get_text() == BLANK_TEXT for t in ax.texts) for ax in heatmap_panels)
    assert all(len(ax.images) == 1 for ax in figure.axes[2::3])  # overlay = the image alone, no colour layer


def test_non_blank_maps_carry_no_blank_marker() -> None:
    image = np.zeros((28, 28))
    cam = np.zeros((28, 28))
    cam[3, 3] = 1.0
    figure = grid_figure([Explained(image=image, cam=cam, predicted="a", confidence=0.9)])
    assert not any(t.get_text() == BLANK_TEXT for ax in figure.axes for t in ax.texts)
    assert len(figure.axes[2].images) == 2


def test_garment_share_against_area() -> None:
    images = torch.zeros(2, 1, 28, 28)
    images[:, :, 7:21, 7:21] = 0.8  # a 14x14 garment: a quarter of the image
    on_garment = torch.zeros(2, 28, 28)
    on_garment[:, 10:14, 10:14] = 1.0
    on_garment[1, 0, 0] = 1.0  # 1/17 of the second map's mass on the background
    summary = summarize_maps(on_garment, images)
    assert garment_mask(images).float().mean() == pytest.approx(0.25)
    assert summary["garment_area"] == pytest.approx(0.25)
    assert summary["garment_mass_share"] == pytest.approx((1 + 16 / 17) / 2)
    assert summary["garment_mass_over_area"] == pytest.approx((1 + 16 / 17) / 2 / 0.25)
    assert summary["blank"] == 0
