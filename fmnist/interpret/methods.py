"""The explanation methods, one Captum call each: what one batch of maps is, per method.

Every method returns, for each image, a map on the input grid of the **positive evidence for the
explained class** (negative values clipped to zero), so that blank-map counts, mass on the
garment, deletion/insertion order and rank correlations mean the same thing for all of them.

* ``gradcam``: Captum ``LayerGradCam`` (channel weights = spatially averaged gradients,
  ``relu_attributions=True``), at a conv layer, brought to the input grid.
* ``hirescam``: HiResCAM (Draelos & Carin, 2020): the gradient multiplied element-wise with the
  activation *before* summing over channels, so each cell keeps its own gradient instead of the
  channel's average. Captum's ``LayerGradCam`` has no such option; ``LayerGradientXActivation``
  (gradient x activation per element) summed over channels is exactly it. For a network that
  ends conv -> ReLU -> global average pooling -> linear it equals CAM (Zhou et al., 2016).
* ``guided-gradcam``: Captum ``GuidedBackprop`` (pixel-level) times the Grad-CAM map, as in
  Selvaraju et al. -- built from the two parts rather than Captum's ``GuidedGradCam`` so the CAM
  factor gets the receptive-field placement of :func:`fmnist.interpret.layers.aligned_upsample`.
* ``occlusion``: Captum ``Occlusion``: the drop of the class score when a 4x4 patch (stride 2)
  is blacked out (black is Fashion-MNIST's background), model-agnostic.
* ``ig``: Captum ``IntegratedGradients`` from the black image, 32 Gauss-Legendre steps,
  model-agnostic. A black baseline gives black pixels exactly zero attribution, whatever the model.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from fmnist.errors import FmnistError

Upsample = Callable[[torch.Tensor], torch.Tensor]  # [N, 1, h, w] layer grid -> [N, 1, H, W] input grid

OCCLUSION_WINDOW = 4
OCCLUSION_STRIDE = 2
IG_STEPS = 32


@dataclass(frozen=True)
class Method:
    """One explanation method: its name on the command line, its title in figures, what it needs."""

    name: str
    title: str
    uses_layer: bool  # attaches to a conv layer (a CAM); False: model-agnostic, pixel-level
    batch_size: int  # images per Captum call (occlusion and IG multiply it internally)
    compute: Callable[[nn.Module, nn.Module | None, torch.Tensor, torch.Tensor, Upsample], torch.Tensor]
    summary: str


def _grad_cam(network: nn.Module, layer: nn.Module | None, x: torch.Tensor, target: torch.Tensor,
              upsample: Upsample) -> torch.Tensor:
    from captum.attr import LayerGradCam

    attribution = LayerGradCam(network, layer).attribute(x, target=target, relu_attributions=True)
    return upsample(_spatial(attribution).detach())[:, 0]


def _hires_cam(network: nn.Module, layer: nn.Module | None, x: torch.Tensor, target: torch.Tensor,
               upsample: Upsample) -> torch.Tensor:
    from captum.attr import LayerGradientXActivation

    product = LayerGradientXActivation(network, layer).attribute(x, target=target)
    cam = _spatial(product).sum(dim=1, keepdim=True).clamp_min(0)
    return upsample(cam.detach())[:, 0]


def _guided_grad_cam(network: nn.Module, layer: nn.Module | None, x: torch.Tensor, target: torch.Tensor,
                     upsample: Upsample) -> torch.Tensor:
    from captum.attr import GuidedBackprop

    cam = _grad_cam(network, layer, x, target, upsample)
    with warnings.catch_warnings():  # Captum announces every time that it hooks the ReLUs (and removes them after)
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
        guided = GuidedBackprop(network).attribute(x, target=target).detach()
    return (guided.sum(dim=1) * cam).clamp_min(0)


def _occlusion(network: nn.Module, layer: nn.Module | None, x: torch.Tensor, target: torch.Tensor,
               upsample: Upsample) -> torch.Tensor:
    from captum.attr import Occlusion

    attribution = Occlusion(network).attribute(
        x, target=target, baselines=0.0, sliding_window_shapes=(x.shape[1], OCCLUSION_WINDOW, OCCLUSION_WINDOW),
        strides=(x.shape[1], OCCLUSION_STRIDE, OCCLUSION_STRIDE), perturbations_per_eval=32)
    return attribution.detach().sum(dim=1).clamp_min(0)


def _integrated_gradients(network: nn.Module, layer: nn.Module | None, x: torch.Tensor, target: torch.Tensor,
                          upsample: Upsample) -> torch.Tensor:
    from captum.attr import IntegratedGradients

    attribution = IntegratedGradients(network).attribute(x, baselines=0.0, target=target, n_steps=IG_STEPS,
                                                         internal_batch_size=min(4096, IG_STEPS * len(x)))
    return attribution.detach().sum(dim=1).clamp_min(0)


def _spatial(attribution: object) -> torch.Tensor:
    if not isinstance(attribution, torch.Tensor) or attribution.dim() != 4:
        shape = tuple(attribution.shape) if isinstance(attribution, torch.Tensor) else type(attribution).__name__
        raise FmnistError(f"the chosen layer has no spatial output (the CAM got shape {shape}); choose a "
                          f"convolutional layer with --layer.")
    return attribution


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("gradcam", "Grad-CAM", True, 128, _grad_cam,
           "Captum LayerGradCam: channel-averaged gradients weight the activations"),
    Method("hirescam", "HiResCAM", True, 128, _hires_cam,
           "gradient x activation per element, summed over channels (LayerGradientXActivation)"),
    Method("guided-gradcam", "Guided Grad-CAM", True, 128, _guided_grad_cam,
           "Captum GuidedBackprop times the Grad-CAM map"),
    Method("occlusion", "Occlusion", False, 32, _occlusion,
           f"Captum Occlusion: score drop under a black {OCCLUSION_WINDOW}x{OCCLUSION_WINDOW} patch, "
           f"stride {OCCLUSION_STRIDE}"),
    Method("ig", "Integrated Gradients", False, 64, _integrated_gradients,
           f"Captum IntegratedGradients from the black image, {IG_STEPS} steps"),
)}
DEFAULT_METHOD = "hirescam"


def get_method(name: str) -> Method:
    """The method called ``name``; an unknown name is one sentence listing the known ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise FmnistError(f"unknown explanation method {name!r}; choose one of: {', '.join(METHODS)}.") from None
