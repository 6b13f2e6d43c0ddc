"""Grad-CAM with Captum: which part of the image made the model say what it said.

``python evaluate.py gradcam RUN_DIR_OR_CKPT`` explains one correct and one wrong test
image per class (or ``--index``), for the predicted class (or ``--class``), at the model's
last convolutional layer (the registry's ``target_layer``; ``--layer`` overrides). Each image
gets the study's three-panel figure (original, heatmap, overlay) and all of them a grid.

Captum pitfalls handled here (SPEC.md, "Known pitfalls"): Grad-CAM needs autograd, so it
runs with ``inference_mode(False)`` + ``enable_grad()`` even when called from a Lightning
test/predict loop; in-place activations are switched off while hooks are attached (and
restored after); the model runs in eval mode (dropout off, BatchNorm running stats) and
gets its previous train/eval state back; ``relu_attributions=True`` as in the Grad-CAM paper.

Upsampling: ``LayerAttribution.interpolate`` (bilinear) stretches the layer's grid over the
image, which is right when convolutions are padded (``resnet``: 7x7 cells every 4 px). The
studies' unpadded CNNs shrink the grid towards the centre (``deep``'s 3x3 ``conv3`` cells
sit on pixels 8.5/12.5/16.5); stretching those would paint evidence on the background, so
there each cell is placed on the pixel its receptive field is centred on (:func:`layer_geometry`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from fmnist.errors import FmnistError
from fmnist.models import get_spec, list_models

SEQUENTIAL_PREFIX = "1."  # TrainedModel.network = Sequential(transform, backbone): backbone names start "1."


@dataclass
class GradCamResult:
    """Grad-CAM maps upsampled to the input size, with the predictions they explain."""

    maps: torch.Tensor  # float [N, H, W], >= 0 (ReLU'd), unnormalised
    probs: torch.Tensor  # float [N, C] softmax of the same forward pass
    targets: torch.Tensor  # int64 [N] the class each map explains
    layer: str  # dotted name inside the backbone
    aligned: bool = False  # maps placed by receptive-field geometry (see layer_geometry), not stretched

    @property
    def predictions(self) -> torch.Tensor:
        return self.probs.argmax(dim=1)

    def normalized(self) -> torch.Tensor:
        """Each map divided by its maximum (all-zero maps stay zero), for display."""
        peak = self.maps.flatten(1).amax(dim=1).clamp_min(1e-12)
        return self.maps / peak[:, None, None]


# ----------------------------------------------------------------------------- layers


def conv_layers(model: nn.Module) -> list[str]:
    """Dotted names of every 2-D convolution, in registration (roughly forward) order."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]


def resolve_layer(model: nn.Module, model_name: str | None = None, layer: str | None = None) -> tuple[str, nn.Module]:
    """The layer Grad-CAM attaches to: ``layer`` if given, else the registry's ``target_layer``, else the last conv.

    ``layer`` may carry ``TrainedModel.network``'s ``"1."`` prefix (``1.features.conv3``).
    A model without any convolution has no spatial feature map to explain: that is an error.
    """
    convs = conv_layers(model)
    if layer:
        names = dict(model.named_modules())
        name = layer
        if name not in names and name.startswith(SEQUENTIAL_PREFIX) and name[len(SEQUENTIAL_PREFIX):] in names:
            name = name[len(SEQUENTIAL_PREFIX):]
        if name not in names or not name:
            hint = f"convolutional layers: {', '.join(convs)}" if convs else "the model has no convolutional layer"
            raise FmnistError(f"the model has no layer {layer!r}; {hint}.")
        return name, names[name]
    label = f"model {model_name!r}" if model_name else f"model {type(model).__name__}"
    if not convs:
        raise FmnistError(f"{label} has no convolutional layer, so Grad-CAM (which weights a conv feature map) "
                          f"does not apply; explain a CNN, or pass --layer with a layer that has a spatial output.")
    if model_name and model_name in list_models():
        target = get_spec(model_name).target_layer
        with contextlib.suppress(AttributeError):
            if target:
                return target, model.get_submodule(target)
    return convs[-1], model.get_submodule(convs[-1])


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


_ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Identity,
                nn.BatchNorm2d, nn.Dropout, nn.Dropout2d)


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def layer_geometry(model: nn.Module, layer_name: str) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """Where the layer's grid cells sit on the input: ``((scale_y, offset_y), (scale_x, offset_x))``, if derivable.

    Cell ``j`` of the layer is centred on input pixel ``scale * j + offset``. Derived from
    kernel/stride/padding when the layer sits in ``model.features``, a plain ``nn.Sequential``
    of convolutions, poolings and element-wise modules (cnn, scratch, deep, lenet5, transfer...);
    ``None`` for anything else (residual blocks), where stretching the map is used.
    Unpadded ("valid") convolutions shrink the grid towards the centre -- ``deep``'s 3x3
    ``conv3`` cells sit on pixels 8.5, 12.5 and 16.5, not spread over 0-27 -- so stretching
    such a map over the whole image would put evidence on the background.
    """
    parts = layer_name.split(".")
    features = getattr(model, "features", None)
    if len(parts) != 2 or parts[0] != "features" or type(features) is not nn.Sequential:
        return None
    chain = []
    for name, child in features.named_children():
        chain.append(child)
        if name == parts[1]:
            break
    else:
        return None
    scale, offset = [1.0, 1.0], [0.0, 0.0]
    for child in reversed(chain):  # from the layer back to the input: centre_in = stride * centre_out + shift
        if isinstance(child, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            padding = child.padding
            if isinstance(padding, str):
                if padding != "valid":
                    return None
                padding = 0
            kernel, stride, pad = _pair(child.kernel_size), _pair(child.stride), _pair(padding)
            dilation = _pair(getattr(child, "dilation", 1))
            for axis in (0, 1):
                offset[axis] = stride[axis] * offset[axis] - pad[axis] + dilation[axis] * (kernel[axis] - 1) / 2
                scale[axis] *= stride[axis]
        elif not isinstance(child, _ELEMENTWISE):
            return None
    return (scale[0], offset[0]), (scale[1], offset[1])


def aligned_upsample(maps: torch.Tensor, geometry: tuple[tuple[float, float], tuple[float, float]],
                     size: tuple[int, int]) -> torch.Tensor:
    """``[N, 1, h, w]`` maps -> ``[N, 1, H, W]`` with every cell placed on the pixel its receptive field is centred on.

    Normalised Gaussian kernel regression, separable, sigma = one cell spacing (receptive fields overlap):
    as smooth as bilinear upsampling, but in the right place; pixels beyond the outermost
    centres take (mostly) the edge cells' values, whose receptive fields reach the border.
    """
    (scale_y, offset_y), (scale_x, offset_x) = geometry

    def weights(count: int, cells: int, scale: float, offset: float) -> torch.Tensor:
        pixels = torch.arange(count, dtype=maps.dtype, device=maps.device)[:, None]
        centres = scale * torch.arange(cells, dtype=maps.dtype, device=maps.device)[None, :] + offset
        kernel = torch.exp(-0.5 * ((pixels - centres) / max(scale, 1.0)) ** 2)
        return kernel / kernel.sum(dim=1, keepdim=True)

    rows = weights(size[0], maps.shape[-2], scale_y, offset_y)  # [H, h]
    cols = weights(size[1], maps.shape[-1], scale_x, offset_x)  # [W, w]
    return torch.einsum("uh,nchw,vw->ncuv", rows, maps, cols)


def grad_cam(model: nn.Module, images: torch.Tensor, *, transform: nn.Module | None = None,
             model_name: str | None = None, layer: str | None = None,
             target: int | Sequence[int] | torch.Tensor | None = None, batch_size: int = 128) -> GradCamResult:
    """Captum ``LayerGradCam`` on ``model`` (the backbone) for float images ``[N, 1, H, W]`` in ``[0, 1]``.

    ``transform`` (the checkpoint's input transform) runs first, inside the attributed
    network, so the maps line up with the unit images even when the model sees 32x32 RGB.
    ``target`` is one class for all images, one per image, or ``None`` for the predicted class.
    Maps are brought to the input size with ``LayerAttribution.interpolate`` (bilinear) when
    the layer's grid spans the input, and by :func:`aligned_upsample` when unpadded
    convolutions leave it covering only the centre (:func:`layer_geometry`).
    """
    from captum.attr import LayerAttribution, LayerGradCam

    layer_name, layer_module = resolve_layer(model, model_name, layer)
    network = nn.Sequential(transform if transform is not None else nn.Identity(), model)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4:
        raise FmnistError(f"Grad-CAM needs images shaped [N, 1, H, W], got {tuple(images.shape)}.")
    height, width = images.shape[-2:]
    resized = transform is not None and getattr(transform, "image_size", height) not in (height, None)
    geometry = None if resized or width != height else layer_geometry(model, layer_name)
    maps, probs, targets = [], [], []
    with prepared_for_attribution(network), torch.inference_mode(False), torch.enable_grad():
        # A clone made outside inference mode is a normal tensor, so inputs from a Lightning
        # predict loop (inference tensors) can still be differentiated.
        x_all = images.detach().clone().float()
        if x_all.max() > 1.5:  # uint8-range input
            x_all = x_all / 255.0
        cam = LayerGradCam(network, layer_module)
        for start in range(0, len(x_all), batch_size):
            x = x_all[start:start + batch_size].to(device)
            with torch.no_grad():
                p = torch.softmax(network(x), dim=1)
            if target is None:
                t = p.argmax(dim=1)
            elif isinstance(target, int):
                t = torch.full((len(x),), int(target), dtype=torch.long, device=device)
            else:
                t = torch.as_tensor(target, dtype=torch.long)[start:start + batch_size].to(device)
            if ((t < 0) | (t >= p.shape[1])).any():
                raise FmnistError(f"class index out of range 0..{p.shape[1] - 1}: {t.tolist()}.")
            attribution = cam.attribute(x, target=t, relu_attributions=True)
            if not isinstance(attribution, torch.Tensor) or attribution.dim() != 4:
                shape = tuple(attribution.shape) if isinstance(attribution, torch.Tensor) else type(attribution)
                raise FmnistError(f"layer {layer_name!r} has no spatial output (Grad-CAM got shape {shape}); "
                                  f"choose a convolutional layer, e.g. {', '.join(conv_layers(model)[-2:]) or 'none'}.")
            if geometry is None:  # the layer's grid spans the input ("same" padding): stretch it over the image
                upsampled = LayerAttribution.interpolate(attribution, (height, width), interpolate_mode="bilinear")
            else:
                upsampled = aligned_upsample(attribution.detach(), geometry, (height, width))
            maps.append(upsampled[:, 0].detach().clamp_min(0).cpu())
            probs.append(p.cpu())
            targets.append(t.cpu())
    if not maps:
        return GradCamResult(torch.empty(0, height, width), torch.empty(0, 0), torch.empty(0, dtype=torch.long),
                             layer_name)
    return GradCamResult(torch.cat(maps), torch.cat(probs), torch.cat(targets), layer_name, geometry is not None)


def explain(trained, images: torch.Tensor, target: int | Sequence[int] | None = None,
            layer: str | None = None) -> GradCamResult:
    """Grad-CAM for a :class:`fmnist.training.checkpoints.TrainedModel` (its transform and registry layer)."""
    return grad_cam(trained.module.model, images, transform=trained.transform, model_name=trained.model_name,
                    layer=layer, target=target)


def mass_in(maps: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Share of each map's positive mass inside a boolean ``region`` ``[H, W]`` (NaN for an all-zero map)."""
    total = maps.flatten(1).sum(dim=1)
    inside = (maps * region).flatten(1).sum(dim=1)
    return torch.where(total > 0, inside / total.clamp_min(1e-12), torch.full_like(total, float("nan")))


