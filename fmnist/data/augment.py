"""Batch-level augmentation with per-sample random parameters, on the batch's device.

Reproduces the studies' Keras pipeline -- RandomRotation(0.05) (+-18 degrees),
RandomZoom(0.1) (+-10%), RandomContrast(0.2) (x[0.8, 1.2]) with Keras' default
``reflect`` fill -- as one affine warp (``affine_grid`` + ``grid_sample``) for the whole
batch. This replaces per-sample PIL transforms, the slow path of a classic DataLoader.

Photo-like options (off by default; configs/photo.yaml turns them on) imitate what a phone
photo looks like after :mod:`fmnist.photos` framed it: a garment laid out with another aspect
(``aspect``), re-framed to its bounding box like every photo is (``reframe``), under other
light (``gamma``), softer (``blur``) and with texture the dataset lacks (``noise``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from fmnist.errors import FmnistError

_PADDING = {"reflect": "reflection", "constant": "zeros", "nearest": "border"}


def _affine_grid(col_x: torch.Tensor, col_y: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``F.affine_grid(theta, [n, c, h, w], align_corners=False)`` for a translation-free ``theta``.

    ``col_x`` / ``col_y`` are ``theta[:, :, 0]`` / ``theta[:, :, 1]`` (``[n, 2]``). One broadcast
    add instead of ``affine_grid``'s batched ``[h*w, 3] x [3, 2]`` matmul, which on CPU cost more
    than the rest of the augmentation together (2.6 of 5.6 ms per batch of 64).
    """
    xs = torch.linspace(-1.0, 1.0, w, device=col_x.device, dtype=col_x.dtype) * ((w - 1) / w)
    ys = torch.linspace(-1.0, 1.0, h, device=col_x.device, dtype=col_x.dtype) * ((h - 1) / h)
    return col_x[:, None, None, :] * xs.view(1, 1, w, 1) + col_y[:, None, None, :] * ys.view(1, h, 1, 1)


def reframe(x: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """Crop each image to the bounding box of its pixels above ``threshold`` and scale it so the box's
    longest side spans the frame, centred, aspect kept (zeros outside); empty images pass unchanged.

    This is how Fashion-MNIST framed its products and how :mod:`fmnist.photos.framing` frames a
    photo, so geometric augmentation followed by ``reframe`` stays inside that framing.
    """
    n, _, h, w = x.shape
    filled = (x > threshold).any(dim=1)  # [n, h, w]
    rows, cols = filled.any(dim=2), filled.any(dim=1)
    empty = ~rows.any(dim=1)
    index_h = torch.arange(h, device=x.device, dtype=x.dtype)
    index_w = torch.arange(w, device=x.device, dtype=x.dtype)
    big = float(max(h, w))
    top = torch.where(rows, index_h, big).amin(dim=1)
    bottom = torch.where(rows, index_h, -1.0).amax(dim=1) + 1
    left = torch.where(cols, index_w, big).amin(dim=1)
    right = torch.where(cols, index_w, -1.0).amax(dim=1) + 1
    # In grid_sample's normalised coordinates (align_corners=False) pixel edge k sits at -1 + 2k/side.
    centre_x, centre_y = (left + right) / w - 1, (top + bottom) / h - 1
    half = torch.maximum((right - left) / w, (bottom - top) / h)
    half = torch.where(empty, torch.ones_like(half), half)
    centre_x = torch.where(empty, torch.zeros_like(centre_x), centre_x)
    centre_y = torch.where(empty, torch.zeros_like(centre_y), centre_y)
    zeros = torch.zeros_like(half)
    grid = _affine_grid(torch.stack([half, zeros], 1), torch.stack([zeros, half], 1), h, w)
    grid = grid + torch.stack([centre_x, centre_y], 1)[:, None, None, :]
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class BatchAugment(nn.Module):
    """Random rotation, zoom and contrast, drawn independently for every image of a batch.

    Input and output: float ``[N, C, H, W]`` in ``[0, 1]``. ``rotation`` is Keras' factor
    (a fraction of a full turn), ``zoom`` the relative zoom range, ``contrast`` the
    contrast factor range; ``translate`` the largest shift as a fraction of the image side
    (Keras' RandomTranslation); ``random_erasing`` the probability of erasing one random
    rectangle, ``hflip`` random horizontal flips (our own recipe, not the studies'). All zero
    means identity.

    Photo-like options: ``aspect`` the largest log aspect change (width x e^a, height x e^-a,
    a uniform in +-aspect/2); ``reframe`` crops every image to the bounding box of its
    non-zero pixels and scales its longest side back to the full frame, centred (Fashion-MNIST's
    and the photo preprocessing's framing); ``gamma`` the largest |log gamma| of a per-image
    gamma curve; ``blur`` the largest Gaussian sigma in pixels; ``noise`` the largest std of
    Gaussian noise added to the object (non-zero pixels; the background stays 0). ``share`` is
    the share of images augmented at all; the rest pass unchanged, so the network keeps seeing
    the clean images it is also judged on.
    """

    def __init__(self, rotation: float = 0.05, zoom: float = 0.1, contrast: float = 0.2,
                 fill_mode: str = "reflect", random_erasing: float = 0.0, hflip: bool = False,
                 translate: float = 0.0, aspect: float = 0.0, reframe: bool = False, gamma: float = 0.0,
                 blur: float = 0.0, noise: float = 0.0, share: float = 1.0) -> None:
        super().__init__()
        if fill_mode not in _PADDING:
            raise ValueError(f"fill_mode must be one of {sorted(_PADDING)}, got {fill_mode!r}.")
        for name, value in (("aspect", aspect), ("gamma", gamma), ("blur", blur), ("noise", noise)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}.")
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share must be in [0, 1], got {share}.")
        self.rotation, self.zoom, self.contrast = rotation, zoom, contrast
        self.fill_mode, self.random_erasing, self.hflip = fill_mode, random_erasing, hflip
        self.translate = translate
        self.aspect, self.reframe, self.gamma, self.blur, self.noise = aspect, reframe, gamma, blur, noise
        self.share = share

    def extra_repr(self) -> str:
        text = (f"rotation={self.rotation}, zoom={self.zoom}, contrast={self.contrast}, fill_mode={self.fill_mode}, "
                f"random_erasing={self.random_erasing}, hflip={self.hflip}, translate={self.translate}")
        if self.aspect or self.reframe or self.gamma or self.blur or self.noise or self.share < 1:
            text += (f", aspect={self.aspect}, reframe={self.reframe}, gamma={self.gamma}, blur={self.blur}, "
                     f"noise={self.noise}, share={self.share}")
        return text

    def _uniform(self, n: int, low: float, high: float, ref: torch.Tensor) -> torch.Tensor:
        return torch.rand(n, device=ref.device, dtype=ref.dtype) * (high - low) + low

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.share < 1.0:
            keep = (torch.rand(x.shape[0], device=x.device) >= self.share).view(-1, 1, 1, 1)
            return torch.where(keep, x, self._augment(x))
        return self._augment(x)

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if self.rotation or self.zoom or self.hflip or self.translate or self.aspect:
            angle = self._uniform(n, -self.rotation, self.rotation, x) * 2 * math.pi
            scale = self._uniform(n, 1 - self.zoom, 1 + self.zoom, x)  # >1 samples a larger area: zoom out
            flip = torch.ones_like(scale)
            if self.hflip:
                flip = torch.where(torch.rand(n, device=x.device) < 0.5, -flip, flip)
            cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
            # theta = [[cos * flip, -sin, 0], [sin * flip, cos, 0]] (no translation), as in F.affine_grid
            col_x = torch.stack([cos * flip, sin * flip], 1)  # theta[:, :, 0]
            col_y = torch.stack([-sin, cos], 1)  # theta[:, :, 1]
            if self.aspect:  # sampling x at e^-a/2 widens the object by e^a/2 (and y the other way)
                log_ratio = self._uniform(n, -self.aspect / 2, self.aspect / 2, x)
                col_x = col_x * torch.exp(-log_ratio)[:, None]
                col_y = col_y * torch.exp(log_ratio)[:, None]
            grid = _affine_grid(col_x, col_y, x.shape[-2], x.shape[-1])
            if self.translate:  # grid coordinates span 2 per image side
                shift = torch.rand(n, 2, device=x.device, dtype=x.dtype).mul_(2).sub_(1).mul_(2 * self.translate)
                grid = grid + shift[:, None, None, :]
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode=_PADDING[self.fill_mode], align_corners=False)
        if self.reframe:
            x = reframe(x)
        if self.contrast:
            factor = self._uniform(n, 1 - self.contrast, 1 + self.contrast, x).view(n, 1, 1, 1)
            mean = x.mean(dim=(2, 3), keepdim=True)
            x = ((x - mean) * factor + mean).clamp_(0.0, 1.0)
        if self.gamma:
            exponent = torch.exp(self._uniform(n, -self.gamma, self.gamma, x)).view(n, 1, 1, 1)
            x = x.clamp(min=0.0).pow(exponent)
        if self.blur:
            x = self._blur(x)
        if self.noise:
            std = self._uniform(n, 0.0, self.noise, x).view(n, 1, 1, 1)
            x = torch.where(x > 0, (x + torch.randn_like(x) * std).clamp_(0.0, 1.0), x)
        if self.random_erasing:
            x = self._erase(x)
        return x

    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        """Separable Gaussian blur with a per-image sigma uniform in [0, blur] (sigma 0 is the identity)."""
        n = x.shape[0]
        sigma = self._uniform(n, 0.0, self.blur, x).clamp_(min=1e-3)
        radius = max(1, math.ceil(3 * self.blur))
        offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
        kernel = torch.exp(-0.5 * (offsets[None, :] / sigma[:, None]) ** 2)
        kernel = kernel / kernel.sum(dim=1, keepdim=True)  # [n, k]
        channels = x.shape[1]
        weight = kernel.repeat_interleave(channels, dim=0)  # one kernel per (image, channel) group
        flat = x.reshape(1, n * channels, *x.shape[-2:])
        flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0)), weight[:, None, None, :], groups=n * channels)
        flat = F.conv2d(F.pad(flat, (0, 0, radius, radius)), weight[:, None, :, None], groups=n * channels)
        return flat.reshape_as(x)

    def _erase(self, x: torch.Tensor) -> torch.Tensor:
        """Random erasing (Zhong et al.): one rectangle of 2-40% area, aspect 0.3-3.3, filled with noise."""
        n, _, h, w = x.shape
        area = self._uniform(n, 0.02, 0.4, x) * h * w
        log_ratio = self._uniform(n, math.log(0.3), math.log(1 / 0.3), x)
        ratio = torch.exp(log_ratio)
        eh = torch.sqrt(area * ratio).clamp(1, h).round()
        ew = torch.sqrt(area / ratio).clamp(1, w).round()
        top = (torch.rand(n, device=x.device) * (h - eh + 1)).floor()
        left = (torch.rand(n, device=x.device) * (w - ew + 1)).floor()
        rows = torch.arange(h, device=x.device, dtype=x.dtype).view(1, h, 1)
        cols = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, w)
        inside = ((rows >= top.view(n, 1, 1)) & (rows < (top + eh).view(n, 1, 1))
                  & (cols >= left.view(n, 1, 1)) & (cols < (left + ew).view(n, 1, 1)))
        apply = (torch.rand(n, device=x.device) < self.random_erasing).view(n, 1, 1)
        mask = (inside & apply).unsqueeze(1)
        return torch.where(mask, torch.rand_like(x), x)


@dataclass(frozen=True)
class AugmentSettings:
    """The data module's training-batch augmentation, one group of settings (``data.augment.*``).

    Off unless ``enabled``; the strengths default to the studies' Keras pipeline (rotation 0.05, zoom 0.1,
    contrast 0.2, reflect fill). See :class:`BatchAugment` for what each does; ``share`` is its ``share``.
    """

    enabled: bool = False
    rotation: float = 0.05
    zoom: float = 0.1
    contrast: float = 0.2
    fill_mode: Literal["reflect", "constant", "nearest"] = "reflect"
    random_erasing: float = 0.0
    hflip: bool = False
    translate: float = 0.0
    aspect: float = 0.0
    reframe: bool = False
    gamma: float = 0.0
    blur: float = 0.0
    noise: float = 0.0
    share: float = 1.0

    def build(self) -> BatchAugment | None:
        """The batch augmenter these settings describe (None when off)."""
        if not self.enabled:
            return None
        settings = dataclasses.asdict(self)
        settings.pop("enabled")
        try:
            return BatchAugment(**settings)
        except ValueError as exc:
            raise FmnistError(f"data.augment: {exc}") from None

    @classmethod
    def of(cls, value: AugmentSettings | Mapping[str, Any] | None) -> AugmentSettings:
        """Settings from an instance, a mapping of its fields (a saved run's hyperparameters) or None (off)."""
        if value is None or isinstance(value, AugmentSettings):
            return value or cls()
        if not isinstance(value, Mapping):
            raise FmnistError(f"data.augment must be a group of settings (enabled, rotation, ...), got {value!r}; "
                              f"write data.augment.enabled: true to switch augmentation on.")
        unknown = sorted(set(value) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise FmnistError(f"data.augment has no setting {unknown[0]!r}; the settings are "
                              f"{', '.join(f.name for f in dataclasses.fields(cls))}.")
        return cls(**value)


# The flat spellings these settings had before they were one group, and the key each is now.
RENAMED_DATA_KEYS = {**{f"{name}": f"augment.{name}" for name in (
    "rotation", "zoom", "contrast", "fill_mode", "random_erasing", "hflip", "translate", "aspect", "reframe", "gamma",
    "blur", "noise")}, "augment_share": "augment.share"}


def old_augment_keys(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(old, new)`` for each flat augmentation key in a config's ``data`` section (``data.augment: true`` too)."""
    found = [(f"data.{old}", f"data.{new}") for old, new in RENAMED_DATA_KEYS.items() if old in data]
    if isinstance(data.get("augment"), bool):
        found.insert(0, ("data.augment", "data.augment.enabled"))
    return found


def refuse_old_augment_keys(data: Mapping[str, Any], where: str) -> None:
    """One sentence naming the new key, for a config written before augmentation became one group."""
    found = old_augment_keys(data)
    if found:
        old, new = found[0]
        more = f" (and {len(found) - 1} more: {', '.join(o for o, _ in found[1:])})" if len(found) > 1 else ""
        raise FmnistError(f"{old} is now {new}{more}: augmentation settings are one group, data.augment.*; rename "
                          f"it in {where}.")


def settings_from_hparams(hparams: Mapping[str, Any]) -> AugmentSettings:
    """A trained run's augmentation, whichever spelling its saved hyperparameters use (runs from before the
    grouping saved ``augment: bool`` and the settings flat beside it)."""
    augment = hparams.get("augment")
    if isinstance(augment, Mapping) or augment is None:
        return AugmentSettings.of(augment)
    flat = {new.removeprefix("augment."): hparams[old] for old, new in RENAMED_DATA_KEYS.items() if old in hparams}
    return AugmentSettings(enabled=bool(augment), **flat)
