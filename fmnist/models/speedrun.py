"""``speedrun``: a small CNN built for time-to-accuracy on 28x28 grayscale (issue 14).

What makes it cheap, after airbench (KellerJordan/cifar10-airbench, arXiv 2404.00498), re-derived for a
2-core CPU and 28x28 inputs rather than copied:

* A frozen **patch-whitening stem** (:class:`PatchWhitening`): a stride-2 convolution whose filters are the
  eigenvectors of the image patches' covariance, scaled to unit variance, and their negatives. It halves the
  grid at once (28 -> 14), so no convolution ever runs at 28x28, and gives the first trained layer
  decorrelated inputs, which is what lets a large-batch SGD make progress from the first steps. It has no
  trainable weights and needs no input gradient, so its backward pass costs nothing.
* Convolution -> max-pool -> BatchNorm -> ReLU: pooling before normalisation runs BatchNorm and the
  activation on a quarter of the values. (ReLU, not airbench's GELU: as accurate here and cheaper on a CPU.)
* Three blocks of (by default) 24/48/96 channels at 14x14, 7x7 and 3x3 (about 1.7 M multiply-adds per image,
  half of study B's ``deep``), a global max-pool and one linear layer.

The training recipe (large-batch Nesterov SGD with a one-cycle schedule, label smoothing, flips and shifts,
an EMA of the weights, later epochs on the hardest images only, flip test-time augmentation) lives in the shared
training stack and ``configs/speedrun*.yaml``; this module is only the network.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from fmnist.errors import FmnistError
from fmnist.models.base import FeatureClassifier
from fmnist.models.registry import register_model

_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}
STEMS = ("whiten", "conv")


class PatchWhitening(nn.Conv2d):
    """A frozen convolution that whitens ``k x k`` image patches (and a trainable bias).

    Its ``2 * C * k * k`` filters are the eigenvectors ``e_i`` of the patch covariance divided by
    ``sqrt(lambda_i + eps)``, followed by their negatives (the activation after it then keeps both signs);
    the bias starts at minus the filtered patch mean, so outputs start centred with unit variance.

    The filters are fitted from the first batch the module sees in training mode (about 400,000 patches at
    batch 512), so the network needs no data to be built and any training loop fits it. The ``fitted``
    buffer travels with the ``state_dict``: a loaded checkpoint is never refitted. Under DDP the patch
    statistics are summed over all processes first, so every replica gets the same filters.
    """

    def __init__(self, in_channels: int = 1, kernel_size: int = 4, stride: int = 2, eps: float = 5e-4) -> None:
        if kernel_size < 1 or stride < 1:
            raise ValueError(f"kernel_size and stride must be >= 1, got {kernel_size} and {stride}.")
        super().__init__(in_channels, 2 * in_channels * kernel_size ** 2, kernel_size, stride,
                         padding=(kernel_size - 1) // 2, bias=True)
        self.weight.requires_grad_(False)
        self.eps = eps
        self.register_buffer("fitted", torch.tensor(False))
        self._known_fitted = False  # `fitted` read once, not every step (on a GPU each read is a device sync)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not self._known_fitted:
            if not bool(self.fitted):
                self.fit(x)
            self._known_fitted = True
        return super().forward(x)

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 (torch's signature)
        super()._load_from_state_dict(*args, **kwargs)
        self._known_fitted = False  # the loaded `fitted` decides again

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        """Set the filters and bias from the patches of ``x`` (``[N, C, H, W]``, as the network sees it)."""
        k = self.kernel_size[0]
        patches = F.unfold(x.float(), k).transpose(1, 2).reshape(-1, self.in_channels * k * k).double()
        stats = torch.cat([patches.new_tensor([len(patches)]), patches.sum(0), (patches.T @ patches).flatten()])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(stats)
        dims = patches.shape[1]
        count, total, products = stats[0], stats[1:1 + dims], stats[1 + dims:].view(dims, dims)
        mean = total / count
        covariance = products / count - torch.outer(mean, mean)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        filters = eigenvectors.T / torch.sqrt(eigenvalues.clamp(min=0) + self.eps)[:, None]
        filters = torch.cat([filters, -filters])
        self.weight.copy_(filters.view_as(self.weight).to(self.weight))
        self.bias.copy_((-(filters @ mean)).to(self.bias))
        self.fitted.fill_(True)


def _norm(channels: int, momentum: float, affine_weight: bool) -> nn.BatchNorm2d:
    norm = nn.BatchNorm2d(channels, momentum=momentum)
    norm.weight.requires_grad_(affine_weight)
    return norm


@register_model("speedrun")
def speedrun(num_classes: int = 10, widths: Sequence[int] = (24, 48, 96), depth: int = 1, stem: str = "whiten",
             stem_kernel: int = 3, stem_stride: int = 2, activation: str = "relu", bn_momentum: float = 0.1,
             bn_weight: bool = True, dirac: bool = False) -> nn.Module:
    """Build the network.

    Args:
        widths: channels of the three blocks (at 14x14, 7x7 and 3x3).
        depth: convolutions per block (the first pools, the others keep the grid and the width).
        stem: ``whiten`` (frozen :class:`PatchWhitening`, fitted on the first training batch) or ``conv``
            (the same shape of layer, trained; the ablation).
        stem_kernel: the stem's patch size.
        stem_stride: 2 (28x28 -> 14x14, then blocks at 14, 7 and 3) or 1 (blocks at 28, 14 and 7: about 4x
            the multiply-adds). Every block but one that would start below 6x6 ends its first conv in a max-pool.
        activation: ``gelu`` or ``relu``.
        bn_momentum: BatchNorm's running-statistics momentum (torch's convention).
        bn_weight: train BatchNorm's scale (``False``: scale fixed at 1, only the shift trains, as airbench).
        dirac: start each convolution as the identity on its first input channels (``nn.init.dirac_``).
    """
    if len(widths) != 3 or any(int(w) < 1 for w in widths):
        raise FmnistError(f"speedrun: widths must be three positive channel counts, got {list(widths)}.")
    if depth < 1:
        raise FmnistError(f"speedrun: depth must be at least 1, got {depth}.")
    if stem not in STEMS:
        raise FmnistError(f"speedrun: stem must be one of {', '.join(STEMS)}, got {stem!r}.")
    if activation not in _ACTIVATIONS:
        raise FmnistError(f"speedrun: activation must be one of {', '.join(_ACTIVATIONS)}, got {activation!r}.")
    if stem_stride not in (1, 2) or not 2 <= stem_kernel <= 5:
        raise FmnistError(f"speedrun: stem_stride must be 1 or 2 and stem_kernel 2..5, got {stem_stride} and "
                          f"{stem_kernel}.")
    act = _ACTIVATIONS[activation]
    stem_channels = 2 * stem_kernel ** 2
    if stem == "whiten":
        first: nn.Module = PatchWhitening(1, stem_kernel, stride=stem_stride)
    else:
        first = nn.Conv2d(1, stem_channels, stem_kernel, stride=stem_stride, padding=(stem_kernel - 1) // 2)
    layers: list[tuple[str, nn.Module]] = [("stem", first), ("stem_act", act())]
    channels = stem_channels
    grid = (28 + 2 * ((stem_kernel - 1) // 2) - stem_kernel) // stem_stride + 1
    for block, width in enumerate(widths, start=1):
        for i in range(depth):
            suffix = f"{block}" if i == 0 else f"{block}{chr(ord('a') + i)}"  # conv1, conv1b, conv1c, ...
            conv = nn.Conv2d(channels, int(width), 3, padding=1, bias=False)
            if dirac:
                nn.init.dirac_(conv.weight[:min(channels, int(width))])
            layers.append((f"conv{suffix}", conv))
            if i == 0 and grid >= 6:
                layers.append((f"pool{block}", nn.MaxPool2d(2)))  # 14 -> 7 -> 3 (stride-1 stem: 28 -> 14 -> 7 -> 3)
                grid //= 2
            layers += [(f"bn{suffix}", _norm(int(width), bn_momentum, bn_weight)), (f"act{suffix}", act())]
            channels = int(width)
    return FeatureClassifier(
        features=nn.Sequential(OrderedDict(layers)),
        classifier=nn.Sequential(OrderedDict(
            pool=nn.AdaptiveMaxPool2d(1), flatten=nn.Flatten(), fc=nn.Linear(channels, num_classes, bias=False),
        )),
    )
