"""Deletion/insertion curves: with a planted signal the right answer is known, and the measure must find it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fmnist.interpret.faithfulness import faithfulness, perturbation_curve, pixel_ranks, reference_curves

REGION = (slice(4, 12), slice(16, 24))  # 64 of 784 pixels


class PlantedRegion(nn.Module):
    """Class 1 when the region's pixels sum to more than 16 (half their expected sum on noise), else class 0."""

    def __init__(self) -> None:
        super().__init__()
        weight = torch.zeros(28, 28)
        weight[REGION] = 1.0
        self.register_buffer("weight", weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (x[:, 0] * self.weight).flatten(1).sum(dim=1) - 16.0
        return torch.stack([torch.zeros_like(score), score], dim=1)


@pytest.fixture
def planted() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    # Not seed 0: the orders' random keys come from seed 0, and equal keys and pixels would order pixels by value.
    images = torch.rand(200, 1, 28, 28, generator=torch.Generator().manual_seed(123)) * 0.9 + 0.1
    model = PlantedRegion()
    with torch.no_grad():
        labels = model(images).argmax(dim=1)
    assert labels.float().mean() == 1.0  # noise images are all class 1 until the region is removed
    return model, images, labels


def _maps(inside: float, outside: float, n: int = 200) -> torch.Tensor:
    maps = torch.full((n, 28, 28), outside)
    maps[:, REGION[0], REGION[1]] = inside
    return maps


def test_pixel_ranks_put_high_scores_first_and_break_ties_at_random() -> None:
    scores = torch.tensor([[0.0, 3.0, 1.0, 0.0, 0.0, 2.0]]).repeat(200, 1)
    ranks = pixel_ranks(scores, torch.Generator().manual_seed(0))
    assert (ranks[:, 1] == 0).all() and (ranks[:, 5] == 1).all() and (ranks[:, 2] == 2).all()
    tied = ranks[:, [0, 3, 4]]
    assert sorted(tied[0].tolist()) == [3, 4, 5]
    assert (tied.float().mean(dim=0) - 4).abs().max() < 0.3  # each tied pixel comes 3rd/4th/5th equally often


def test_a_map_on_the_planted_region_deletes_much_faster_than_random(planted) -> None:
    model, images, labels = planted
    right = faithfulness(model, images, _maps(1.0, 0.0), labels, labels)
    wrong = faithfulness(model, images, _maps(0.0, 1.0), labels, labels)
    blank = faithfulness(model, images, torch.zeros(200, 28, 28), labels, labels)
    deletion = right["deletion"]
    assert deletion["map"]["accuracy"][0] == 1.0 and deletion["map"]["accuracy"][1] < 0.1  # gone after 5%
    assert deletion["ratio_random"] < 0.15
    assert right["insertion"]["ratio_random"] > 1.5
    assert wrong["deletion"]["ratio_random"] > 1.2  # the region last: slower than random
    assert wrong["insertion"]["ratio_random"] < 0.5
    assert blank["deletion"]["ratio_random"] == pytest.approx(1.0, abs=0.1)  # ties at random = random order
    # On noise every pixel is "garment", so garment-first is another random order.
    assert deletion["garment"]["auc_accuracy"] == pytest.approx(deletion["random"]["auc_accuracy"], abs=0.05)


def test_garment_first_order_is_the_stronger_reference_on_a_black_background(planted) -> None:
    model, images, labels = planted
    framed = torch.zeros_like(images)
    framed[:, :, 2:14, 12:26] = images[:, :, 2:14, 12:26]  # the "garment": a box around the region
    with torch.no_grad():
        labels = model(framed).argmax(dim=1)
    references = reference_curves(model, framed, labels, labels)
    random_auc = references["deletion"]["random"]["auc_accuracy"]
    assert references["deletion"]["garment"]["auc_accuracy"] < 0.5 * random_auc
    result = faithfulness(model, framed, _maps(1.0, 0.0), labels, labels, references)
    assert result["deletion"]["ratio_garment"] < 0.5  # the map knows more than where the garment is


def test_curve_reports_probability_of_the_explained_class(planted) -> None:
    model, images, labels = planted
    ranks = pixel_ranks(_maps(1.0, 0.0).flatten(1), torch.Generator().manual_seed(0))
    curve = perturbation_curve(model, images, ranks, labels, torch.zeros_like(labels), "deletion", steps=4)
    assert len(curve["probability"]) == 5 and curve["probability"][0] < 0.01 and curve["probability"][-1] > 0.99
    with pytest.raises(ValueError, match="mode"):
        perturbation_curve(model, images, ranks, labels, labels, "blur")
