"""Which layer a CAM attaches to, and where that layer's grid cells sit on the input image.

The default layer is chosen by the resolution it keeps: the **last layer whose output grid is at
least** :data:`MIN_GRID` x :data:`MIN_GRID`, among the convolutions and the blocks of ``features``
(:func:`default_layer`). The studies' unpadded CNNs end in a 3x3 grid (``deep``/``cnn`` ``conv3``),
where Grad-CAM left 43.8% of ``deep``'s maps blank (issue 15); at ``conv2`` (11x11) HiResCAM gives
none and passes the deletion test. ``resnet``'s 7x7 ``block2`` failed deletion and randomisation on
the full-budget checkpoint, its 14x14 ``block1`` passes both, hence at least 8x8 (docs/gradcam.md has
the measurements). A residual block counts as
a whole: its last convolution sees only the branch, its output also what the skip connection carries.

The registry's ``target_layer`` (fmnist.models) records this choice per model, and a test keeps
the two in step; the rule itself serves models outside the registry.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from fmnist.errors import FmnistError
from fmnist.models import get_spec, list_models

MIN_GRID = 8  # 7 picked resnet's 7x7 block2; 8 moves it (and speedrun) to a 14x14 grid: docs/gradcam.md
SEQUENTIAL_PREFIX = "1."  # TrainedModel.network = Sequential(transform, backbone): backbone names start "1."


def conv_layers(model: nn.Module) -> list[str]:
    """Dotted names of every 2-D convolution, in registration (roughly forward) order."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]


def _input_shape(model: nn.Module, model_name: str | None) -> tuple[int, int, int]:
    if model_name and model_name in list_models():
        spec = get_spec(model_name)
        return spec.channels, spec.input_size, spec.input_size
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return (first.in_channels if first is not None else 1), 28, 28


def candidate_layers(model: nn.Module) -> list[str]:
    """Where a CAM may attach: every convolution, and every stage of ``model.features`` that holds one (a block).

    A residual block's last convolution sees only the branch, not what the skip connection
    carries; the block's output (after the addition) holds all the evidence the next stage gets.
    """
    convs = conv_layers(model)
    features = getattr(model, "features", None)
    blocks = []
    if isinstance(features, nn.Module):
        prefix = next(name for name, module in model.named_modules() if module is features)
        blocks = [f"{prefix}.{name}" for name, child in features.named_children()
                  if not isinstance(child, nn.Conv2d) and any(isinstance(m, nn.Conv2d) for m in child.modules())]
    return [*convs, *blocks]


def output_grids(model: nn.Module, model_name: str | None = None) -> dict[str, tuple[int, int]]:
    """Output height x width of every :func:`candidate_layers` entry, in the order they finish in a forward pass."""
    grids: dict[str, tuple[int, int]] = {}
    hooks = []
    modules = dict(model.named_modules())
    for name in candidate_layers(model):
        def record(module: nn.Module, args: tuple, out: torch.Tensor, name: str = name) -> None:
            if isinstance(out, torch.Tensor) and out.dim() == 4:
                grids[name] = (int(out.shape[-2]), int(out.shape[-1]))
        hooks.append(modules[name].register_forward_hook(record))
    training = model.training
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *_input_shape(model, model_name), device=device))
    finally:
        model.train(training)
        for hook in hooks:
            hook.remove()
    return grids


def default_layer(model: nn.Module, model_name: str | None = None, min_grid: int = MIN_GRID) -> str:
    """The last layer to finish (a conv, or a block of ``features``) whose grid is at least ``min_grid`` a side.

    When no layer keeps that much, the one with the largest grid.
    """
    grids = output_grids(model, model_name)
    if not grids:
        label = f"model {model_name!r}" if model_name else f"model {type(model).__name__}"
        raise FmnistError(f"{label} has no convolutional layer, so a CAM (which weights a conv feature map) "
                          f"does not apply; explain a CNN, or pass --layer with a layer that has a spatial output.")
    kept = [name for name, (h, w) in grids.items() if min(h, w) >= min_grid]
    if kept:
        return kept[-1]
    return max(grids, key=lambda name: min(grids[name]))


def resolve_layer(model: nn.Module, model_name: str | None = None, layer: str | None = None) -> tuple[str, nn.Module]:
    """The layer a CAM attaches to: ``layer`` if given, else the registry's ``target_layer``, else :func:`default_layer`.

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
    if convs and model_name and model_name in list_models():
        target = get_spec(model_name).target_layer
        with contextlib.suppress(AttributeError):
            if target:
                return target, model.get_submodule(target)
    name = default_layer(model, model_name)
    return name, model.get_submodule(name)


# ----------------------------------------------------------------------------- geometry

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
