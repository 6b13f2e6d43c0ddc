"""Model randomisation: a trained model's maps must decorrelate as its layers are re-initialised, top-down."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from region_task import RegionModel, trained_region_model

from fmnist.interpret.gradcam import attribute
from fmnist.interpret.sanity import (
    PASS_THRESHOLD,
    cascading_randomisation,
    randomisation_steps,
    spearman_rows,
)
from fmnist.models import create_model


@pytest.fixture
def region_model() -> RegionModel:
    return trained_region_model()


def test_steps_go_from_the_output_to_the_input() -> None:
    assert randomisation_steps(create_model("deep")) == ["classifier.fc", "features.conv3", "features.bn2",
                                                         "features.conv2", "features.bn1", "features.conv1"]


def test_spearman_matches_scipy_and_is_undefined_for_constant_maps() -> None:
    from scipy.stats import spearmanr

    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 5, 5, generator=g), torch.rand(3, 5, 5, generator=g)
    b[1] = a[1] ** 2  # same order: 1
    b[2] = 0.0  # a blank map has no ranks
    rho = spearman_rows(a, b)
    assert rho[0] == pytest.approx(spearmanr(a[0].flatten(), b[0].flatten()).statistic)
    assert rho[1] == pytest.approx(1.0) and np.isnan(rho[2])


@pytest.mark.parametrize("method", ["hirescam", "gradcam"])
def test_trained_maps_decorrelate_under_cascading_randomisation(region_model, method: str) -> None:
    images = region_model.x_test
    targets = torch.ones(len(images), dtype=torch.long)

    def maps_of(model: torch.nn.Module) -> torch.Tensor:
        return attribute(model, images, method=method, model_name="scratch", target=targets).maps

    state = torch.random.get_rng_state()
    before = {k: v.clone() for k, v in region_model.model.state_dict().items()}
    result = cascading_randomisation(region_model.model, maps_of, seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)  # seeded on the side
    assert all(torch.equal(v, region_model.model.state_dict()[k]) for k, v in before.items())  # the copy changed
    layers = [s["layer"] for s in result.steps]
    assert layers == ["none (trained)", "classifier.fc2", "classifier.fc1", "features.conv2", "features.conv1"]
    assert result.steps[0]["spearman_mean"] == pytest.approx(1.0)
    # A random network still answers to the bright square (its activations follow the input), so the tiny
    # model's maps keep rho ~0.3 (measured 0.22-0.35 over seeds); unrelated maps (below) keep 1.0.
    assert result.final_correlation is not None and result.final_correlation < 0.5
    assert result.passed is (result.final_correlation <= PASS_THRESHOLD)
    assert result.examples.shape == (5, 4, 28, 28)
    again = cascading_randomisation(region_model.model, maps_of, seed=0)
    assert again.steps == result.steps  # repeatable


def test_maps_that_ignore_the_model_fail_the_check(region_model) -> None:
    """An edge detector, or the input itself, survives randomisation: the check must say so."""
    images = region_model.x_test[:20, 0]
    result = cascading_randomisation(region_model.model, lambda model: images.clone())
    assert all(s["spearman_mean"] == pytest.approx(1.0) for s in result.steps)
    assert result.passed is False and result.to_dict()["passed"] is False
