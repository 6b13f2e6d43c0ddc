"""Explanation maps for a model and a batch of images: Grad-CAM and the methods experts compare it with.

``python evaluate.py gradcam RUN_DIR_OR_CKPT`` explains one correct and one wrong test
image per class (or ``--index``), for the predicted class (or ``--class``), with one of the
methods of :mod:`fmnist.interpret.methods` (``--method``), at the layer of
:mod:`fmnist.interpret.layers` (``--layer`` overrides). Each image gets the study's three-panel
figure (original, heatmap, overlay) and all of them a grid.

Captum pitfalls handled here (SPEC.md, "Known pitfalls"): attribution needs autograd, so it
runs with ``inference_mode(False)`` + ``enable_grad()`` even when called from a Lightning
test/predict loop; in-place activations are switched off while hooks are attached (and
restored after); the model runs in eval mode (dropout off, BatchNorm running stats) and
gets its previous train/eval state back.

Upsampling of layer maps: ``LayerAttribution.interpolate`` (bilinear) stretches the layer's grid
over the image, which is right when convolutions are padded (``resnet``: 14x14 cells every 2 px).
The studies' unpadded CNNs shrink the grid towards the centre; stretching those would paint
evidence on the background, so there each cell is placed on the pixel its receptive field is
centred on (:func:`fmnist.interpret.layers.layer_geometry`).

A map with no positive value anywhere is **blank** (:attr:`GradCamResult.blank`): it says
nothing, and figures and reports show and count it as such.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from fmnist.errors import FmnistError
from fmnist.interpret.layers import aligned_upsample, layer_geometry, resolve_layer
from fmnist.interpret.measures import blank_maps
from fmnist.interpret.methods import DEFAULT_METHOD, get_method

__all__ = ["GradCamResult", "attribute", "explain", "grad_cam", "prepared_for_attribution"]


@dataclass
class GradCamResult:
    """Explanation maps on the input grid, with the predictions they explain (any method, not only Grad-CAM)."""

    maps: torch.Tensor  # float [N, H, W], >= 0 (positive evidence), unnormalised
    probs: torch.Tensor  # float [N, C] softmax of the same forward pass
    targets: torch.Tensor  # int64 [N] the class each map explains
    layer: str | None  # dotted name inside the backbone; None for model-agnostic methods
    aligned: bool = False  # layer maps placed by receptive-field geometry (see layer_geometry), not stretched
    method: str = "gradcam"

    @property
    def predictions(self) -> torch.Tensor:
        return self.probs.argmax(dim=1)

    @property
    def blank(self) -> torch.Tensor:
        """bool ``[N]``: maps without any positive value (nothing to show)."""
        return blank_maps(self.maps)

    def select(self, indices: Sequence[int] | torch.Tensor) -> GradCamResult:
        """The same result for some of the images only."""
        index = torch.as_tensor(indices, dtype=torch.long)
        return GradCamResult(self.maps[index], self.probs[index], self.targets[index], self.layer, self.aligned,
                             self.method)

    def normalized(self) -> torch.Tensor:
        """Each map divided by its maximum (all-zero maps stay zero), for display."""
        peak = self.maps.flatten(1).amax(dim=1).clamp_min(1e-12)
        return self.maps / peak[:, None, None]


@contextlib.contextmanager
def prepared_for_attribution(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no in-place activations while Captum's hooks are attached; the old state comes back after.

    An in-place ReLU right after the hooked layer overwrites the activation Captum saved
    (wrong maps, or "a view ... is being modified inplace" errors).
    """
    training = {module: module.training for module in model.modules()}
    inplace = [module for module in model.modules() if getattr(module, "inplace", False) is True]
    model.eval()
    for module in inplace:
        module.inplace = False
    try:
        yield model
    finally:
        for module in inplace:
            module.inplace = True
        for module, mode in training.items():
            module.training = mode


def _targets(target: int | Sequence[int] | torch.Tensor | None, probs: torch.Tensor, start: int,
             device: torch.device) -> torch.Tensor:
    if target is None:
        t = probs.argmax(dim=1)
    elif isinstance(target, int):
        t = torch.full((len(probs),), int(target), dtype=torch.long, device=device)
    else:
        t = torch.as_tensor(target, dtype=torch.long)[start:start + len(probs)].to(device)
    if ((t < 0) | (t >= probs.shape[1])).any():
        raise FmnistError(f"class index out of range 0..{probs.shape[1] - 1}: {t.tolist()}.")
    return t


def attribute(model: nn.Module, images: torch.Tensor, *, method: str = DEFAULT_METHOD,
              transform: nn.Module | None = None, model_name: str | None = None, layer: str | None = None,
              target: int | Sequence[int] | torch.Tensor | None = None,
              batch_size: int | None = None) -> GradCamResult:
    """Maps of ``method`` for ``model`` (the backbone) on float images ``[N, 1, H, W]`` in ``[0, 1]`` (or uint8).

    ``transform`` (the checkpoint's input transform) runs first, inside the attributed
    network, so the maps line up with the unit images even when the model sees 32x32 RGB.
    ``target`` is one class for all images, one per image, or ``None`` for the predicted class.
    Layer maps reach the input size by ``LayerAttribution.interpolate`` (bilinear) when the
    layer's grid spans the input, and by :func:`aligned_upsample` when unpadded convolutions
    leave it covering only the centre (:func:`layer_geometry`).
    """
    from captum.attr import LayerAttribution

    spec = get_method(method)
    layer_name, layer_module = resolve_layer(model, model_name, layer) if spec.uses_layer else (None, None)
    network = nn.Sequential(transform if transform is not None else nn.Identity(), model)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4:
        raise FmnistError(f"explanations need images shaped [N, 1, H, W], got {tuple(images.shape)}.")
    height, width = images.shape[-2:]
    resized = transform is not None and getattr(transform, "image_size", height) not in (height, None)
    geometry = None
    if layer_name is not None and not resized and width == height:
        geometry = layer_geometry(model, layer_name)

    def upsample(cam: torch.Tensor) -> torch.Tensor:
        if geometry is None:  # the layer's grid spans the input ("same" padding): stretch it over the image
            return LayerAttribution.interpolate(cam, (height, width), interpolate_mode="bilinear")
        return aligned_upsample(cam, geometry, (height, width))

    maps, probs, targets = [], [], []
    step = batch_size or spec.batch_size
    with prepared_for_attribution(network), torch.inference_mode(False), torch.enable_grad():
        # A clone made outside inference mode is a normal tensor, so inputs from a Lightning
        # predict loop (inference tensors) can still be differentiated.
        x_all = images.detach().clone().float()
        if images.dtype == torch.uint8 or x_all.max() > 1.5:  # uint8-range input
            x_all = x_all / 255.0
        for start in range(0, len(x_all), step):
            x = x_all[start:start + step].to(device).requires_grad_()  # Captum warns about inputs without grad
            with torch.no_grad():
                p = torch.softmax(network(x), dim=1)
            t = _targets(target, p, start, device)
            maps.append(spec.compute(network, layer_module, x, t, upsample).clamp_min(0).cpu())
            probs.append(p.cpu())
            targets.append(t.cpu())
    if not maps:
        return GradCamResult(torch.empty(0, height, width), torch.empty(0, 0), torch.empty(0, dtype=torch.long),
                             layer_name, method=method)
    return GradCamResult(torch.cat(maps), torch.cat(probs), torch.cat(targets), layer_name, geometry is not None,
                         method)


def grad_cam(model: nn.Module, images: torch.Tensor, *, transform: nn.Module | None = None,
             model_name: str | None = None, layer: str | None = None,
             target: int | Sequence[int] | torch.Tensor | None = None, batch_size: int = 128) -> GradCamResult:
    """Captum ``LayerGradCam`` (``relu_attributions=True``, as in the Grad-CAM paper): :func:`attribute` with it."""
    return attribute(model, images, method="gradcam", transform=transform, model_name=model_name, layer=layer,
                     target=target, batch_size=batch_size)


def explain(trained, images: torch.Tensor, target: int | Sequence[int] | None = None,
            layer: str | None = None, method: str = DEFAULT_METHOD) -> GradCamResult:
    """Maps for a :class:`fmnist.training.checkpoints.TrainedModel` (its transform, its registry layer)."""
    return attribute(trained.module.model, images, method=method, transform=trained.transform,
                     model_name=trained.model_name, layer=layer, target=target)
