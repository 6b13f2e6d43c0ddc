"""A seeded, corrupted copy of the Fashion-MNIST test set, in the spirit of Fashion-MNIST-C.

Robustness to distribution shift is measured on fixed corrupted test sets: MNIST-C (Mu &
Gilmer 2019) ports Hendrycks & Dietterich's ImageNet-C corruptions (ICLR 2019) to 28x28 gray
images, and Fashion-MNIST-C (Weiss & Tonella, ISSTA 2022) applies a subset of them to
Fashion-MNIST with a random severity per image, plus flips and a quarter turn. Their published
files come from an unseeded generator that needs ImageMagick; this module regenerates an
equivalent set from a seed, one split per corruption, with numpy and scipy only and vectorised
over the batch (the 10,000 test images x 16 corruptions take a few seconds).
:func:`fmnist.data.corrupted_sets.ensure_corrupted` writes the named set ``fashion-c`` once under the data root and
reuses it;
:mod:`fmnist.evaluation.robustness` scores models on it.

Deliberate differences from the MNIST-C code:

* blurs are isotropic: MNIST-C calls ``skimage.filters.gaussian(..., multichannel=True)`` on a
  2-D array, which takes the columns for colour channels and blurs along the rows only;
* motion blur re-implements ImageMagick's ``MotionBlurImage`` kernel (as Hendrycks' Wand-free
  ImageNet-C code does) instead of calling ImageMagick;
* ``saturate`` keeps MNIST-C's amplifying settings only, so that a higher severity always
  changes the image more (see its docstring);
* results are rounded, not truncated, to uint8.

Each corruption draws from its own generator, seeded by ``(seed, sha256(name))``, so adding or
reordering corruptions never changes another one's output.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Literal

import numpy as np
from scipy import ndimage

from fmnist.errors import FmnistError

Severity = int | Literal["random"]
Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]

SEVERITIES = (1, 2, 3, 4, 5)
IMAGE_SHAPE = (28, 28)
# Bump when any corruption's output changes, so cached sets from older code are regenerated.
GENERATOR_VERSION = 1


# -- helpers ---------------------------------------------------------------------------------------
def _to_float(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32) / np.float32(255.0)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _gaussian(x: np.ndarray, sigma: float) -> np.ndarray:
    """``skimage.filters.gaussian`` (mode ``nearest``, truncate 4) on every image of a float batch."""
    return ndimage.gaussian_filter(x, sigma=(0.0, sigma, sigma), mode="nearest", truncate=4.0)


def _warp(images: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``skimage.transform.warp(x, inverse_map=AffineTransform(matrix))`` about the image centre, per batch.

    ``matrix`` maps output (x, y) to input (x, y) as skimage's 2x2 part; the translation keeps the
    centre (13.5, 13.5) fixed, as MNIST-C does. Bilinear, black outside the image.
    """
    n, h, w = images.shape
    rc = np.asarray(matrix, dtype=np.float64)[::-1, ::-1]  # (x, y) order -> (row, col) order
    centre = np.array([(h - 1) / 2.0, (w - 1) / 2.0])
    full = np.eye(3)
    full[1:, 1:] = rc
    offset = np.concatenate([[0.0], centre - rc @ centre])
    warped = ndimage.affine_transform(_to_float(images), full, offset=offset, order=1,
                                      mode="grid-constant", cval=0.0)
    return _to_uint8(warped)


def _warp_random_sign(images: np.ndarray, rng: np.random.Generator,
                      matrix_for: Callable[[float], np.ndarray], amount: float) -> np.ndarray:
    """Warp each image with ``matrix_for(+amount)`` or ``matrix_for(-amount)``, the sign drawn per image."""
    signs = rng.choice(np.array([-1.0, 1.0]), size=len(images))
    out = np.empty_like(images)
    for sign in (-1.0, 1.0):
        chosen = signs == sign
        if chosen.any():
            out[chosen] = _warp(images[chosen], matrix_for(sign * amount))
    return out


# -- corruptions -----------------------------------------------------------------------------------
def shot_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Poisson photon noise, ``c`` photons at full white; MNIST-C ``shot_noise`` (c = 60 .. 3)."""
    c = (60, 25, 12, 5, 3)[severity - 1]
    return _to_uint8(rng.poisson(_to_float(images) * c) / c)


def impulse_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Salt-and-pepper noise on a fraction ``amount`` of pixels; MNIST-C ``impulse_noise`` (skimage ``s&p``)."""
    amount = (0.03, 0.06, 0.09, 0.17, 0.27)[severity - 1]
    hit = rng.random(images.shape, dtype=np.float32) < amount
    salt = rng.random(images.shape, dtype=np.float32) < 0.5
    out = images.copy()
    out[hit] = np.where(salt[hit], 255, 0)
    return out


def gaussian_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise of std ``sigma`` (in [0, 1] units); MNIST-C ``gaussian_noise``."""
    sigma = (0.08, 0.12, 0.18, 0.26, 0.38)[severity - 1]
    x = _to_float(images)
    return _to_uint8(x + sigma * rng.standard_normal(x.shape, dtype=np.float32))


def gaussian_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Isotropic Gaussian blur of std ``sigma`` pixels; MNIST-C ``gaussian_blur`` (sigma = 1 .. 6)."""
    sigma = (1, 2, 3, 4, 6)[severity - 1]
    return _to_uint8(_gaussian(_to_float(images), sigma))


def glass_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Blur, locally shuffle pixels, blur again; MNIST-C / ImageNet-C ``glass_blur``.

    The shuffle is ImageNet-C's sequential sweep of swaps (each a coin flip, offsets in
    ``[-delta, delta)``), run for all images at once: an image that does not swap at a position
    swaps the pixel with itself.
    """
    sigma, delta, iterations = ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))[severity - 1]
    n, h, w = images.shape
    # (H, W, N) layout: every swap below touches one contiguous row of N values per side.
    x = np.ascontiguousarray(_to_uint8(_gaussian(_to_float(images), sigma)).transpose(1, 2, 0))
    batch = np.arange(n)
    rows, cols = np.arange(h - delta, delta, -1), np.arange(w - delta, delta, -1)
    for _ in range(iterations):
        swap = rng.random((len(rows), len(cols), n)) < 0.5
        shift = rng.integers(-delta, delta, size=(len(rows), len(cols), 2, n), dtype=np.int8) * swap[:, :, None, :]
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                r2, c2 = r + shift[i, j, 0], c + shift[i, j, 1]
                here = x[r, c].copy()
                x[r, c] = x[r2, c2, batch]
                x[r2, c2, batch] = here
    return _to_uint8(_gaussian(_to_float(x.transpose(2, 0, 1)), sigma))


def motion_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """One-sided Gaussian streak at a random angle in [-45, 45) degrees; MNIST-C ``motion_blur`` (ImageMagick).

    ImageMagick's ``MotionBlurImage(radius, sigma, angle)``: ``2 * radius + 1`` taps along the
    angle, weights ``exp(-i^2 / 2 sigma^2)`` normalised, edge pixels repeated beyond the border.
    """
    radius, sigma = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))[severity - 1]
    n, h, w = images.shape
    taps = np.arange(2 * radius + 1)
    weights = np.exp(-(taps**2) / (2.0 * sigma**2))
    weights = (weights / weights.sum()).astype(np.float32)
    angle = np.deg2rad(rng.uniform(-45.0, 45.0, size=n))
    d_col = np.ceil(taps[None, :] * np.cos(angle)[:, None] - 0.5).astype(np.intp)  # [n, taps]
    d_row = np.ceil(taps[None, :] * np.sin(angle)[:, None] - 0.5).astype(np.intp)
    flat = _to_float(images).reshape(-1)
    base = (np.arange(n) * (h * w))[:, None, None]
    out = np.zeros((n, h, w), dtype=np.float32)
    for i, weight in enumerate(weights):
        src_rows = np.clip(np.arange(h)[None, :] + d_row[:, i, None], 0, h - 1)  # [n, h]
        src_cols = np.clip(np.arange(w)[None, :] + d_col[:, i, None], 0, w - 1)  # [n, w]
        out += weight * flat.take(base + src_rows[:, :, None] * w + src_cols[:, None, :])
    return _to_uint8(out)


def _shear_matrix(angle: float) -> np.ndarray:
    # skimage (<= 0.19, the version MNIST-C used) AffineTransform(shear=angle) without rotation or scale.
    return np.array([[1.0, -np.sin(angle)], [0.0, np.cos(angle)]])


def _rotation_matrix(angle: float) -> np.ndarray:
    return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])


def shear(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Shear by +-0.2 .. 1.0 rad (sign per image) about the centre; MNIST-C ``shear``."""
    return _warp_random_sign(images, rng, _shear_matrix, (0.2, 0.4, 0.6, 0.8, 1.0)[severity - 1])


def rotate(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Rotate by +-0.2 .. 1.0 rad (11 .. 57 degrees, sign per image) about the centre; MNIST-C ``rotate``."""
    return _warp_random_sign(images, rng, _rotation_matrix, (0.2, 0.4, 0.6, 0.8, 1.0)[severity - 1])


def scale(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Shrink about the centre to 0.9 .. 0.5 of the size; MNIST-C ``scale``."""
    factor = (0.9, 0.8, 0.7, 0.6, 0.5)[severity - 1]
    return _warp(images, np.eye(2) / factor)


def brightness(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Add 0.1 .. 0.5 to HSV value; MNIST-C ``brightness`` (on a gray image: ``clip(x + c)``)."""
    c = (0.1, 0.2, 0.3, 0.4, 0.5)[severity - 1]
    return _to_uint8(_to_float(images) + c)


def contrast(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Scale deviations from each image's mean by 0.4 .. 0.05; MNIST-C ``contrast``."""
    c = (0.4, 0.3, 0.2, 0.1, 0.05)[severity - 1]
    x = _to_float(images)
    means = x.mean(axis=(1, 2), keepdims=True)
    return _to_uint8((x - means) * c + means)


def saturate(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Over-expose, ``clip(a * x + b)``; MNIST-C ``saturate`` restricted to its amplifying settings.

    MNIST-C scales all of H, S, V of a gray image by ``a`` and adds ``b``, i.e. ``v <- clip(a * v + b)``
    with a faint tint that ``rgb2gray`` removes again (<4 %). Its settings (a, b) = (0.3, 0),
    (0.1, 0), (2, 0), (5, .1), (20, .2) first dim and then brighten, so the change is not monotone
    in severity; we keep (2, 0), (5, .1), (20, .2) and add (1.5, 0) and (3.5, .05) below them.
    """
    a, b = ((1.5, 0.0), (2.0, 0.0), (3.5, 0.05), (5.0, 0.1), (20.0, 0.2))[severity - 1]
    return _to_uint8(_to_float(images) * a + b)


def inverse(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """``255 - x`` (severity ignored); MNIST-C ``inverse``."""
    return 255 - images


def flip_lr(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Mirror left-right (severity ignored); Fashion-MNIST-C ``flip_sides``."""
    return np.ascontiguousarray(images[:, :, ::-1])


def flip_ud(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Mirror upside-down (severity ignored); Fashion-MNIST-C ``flip_up_down``."""
    return np.ascontiguousarray(images[:, ::-1, :])


def turn(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Rotate 90 degrees counter-clockwise (severity ignored); Fashion-MNIST-C ``turn_left`` (``np.rot90``)."""
    return np.ascontiguousarray(np.rot90(images, k=1, axes=(1, 2)))


CORRUPTIONS: dict[str, Corruption] = {
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "shear": shear,
    "scale": scale,
    "rotate": rotate,
    "brightness": brightness,
    "contrast": contrast,
    "saturate": saturate,
    "inverse": inverse,
    "flip_lr": flip_lr,
    "flip_ud": flip_ud,
    "turn": turn,
    "gaussian_noise": gaussian_noise,
    "gaussian_blur": gaussian_blur,
}
"""Every corruption by name, in Fashion-MNIST-C's order, then the two MNIST-C extras."""

STOCHASTIC: frozenset[str] = frozenset(
    {"shot_noise", "impulse_noise", "gaussian_noise", "glass_blur", "motion_blur", "shear", "rotate"})
"""Corruptions that draw from the generator even at a fixed severity (the others then ignore the seed)."""

SEVERITY_INDEPENDENT: frozenset[str] = frozenset({"inverse", "flip_lr", "flip_ud", "turn"})
"""Corruptions whose output does not depend on the severity at all."""


# -- validation ------------------------------------------------------------------------------------
def _valid_names() -> str:
    return ", ".join(CORRUPTIONS)


def check_name(name: str) -> Corruption:
    try:
        return CORRUPTIONS[name]
    except (KeyError, TypeError):
        raise FmnistError(f"Unknown corruption {name!r}; use one of: {_valid_names()}.") from None


def check_names(names: Iterable[str] | None) -> list[str]:
    if names is None:
        return list(CORRUPTIONS)
    if isinstance(names, str):
        names = [names]
    names = list(names)
    for name in names:
        check_name(name)
    return names


def check_severity(severity: object) -> Severity:
    if isinstance(severity, str) and severity == "random":
        return "random"
    if isinstance(severity, (int, np.integer)) and not isinstance(severity, bool) and 1 <= severity <= 5:
        return int(severity)
    raise FmnistError(f"Severity must be an integer from 1 to 5 or 'random', got {severity!r}.")


def check_seed(seed: object) -> int:
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        return int(seed)
    raise FmnistError(f"Seed must be a non-negative integer, got {seed!r}.")


def check_images(images: object) -> np.ndarray:
    array = np.asarray(images)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[1:] != IMAGE_SHAPE:
        raise FmnistError(f"Images must be a uint8 array of shape [N, 28, 28], got {array.dtype} "
                          f"{list(array.shape)}; pass the raw test images, e.g. from fmnist.data.idx.read_images.")
    return np.ascontiguousarray(array)


def check_labels(labels: object, count: int) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1 or len(array) != count or not np.issubdtype(array.dtype, np.integer):
        raise FmnistError(f"Labels must be a 1-D integer array with one label per image ({count}), got "
                          f"{array.dtype} {list(array.shape)}; pass the labels that belong to the images.")
    return np.ascontiguousarray(array)


# -- generation ------------------------------------------------------------------------------------
def _rng(seed: int, name: str) -> np.random.Generator:
    """A generator of its own per corruption, so one corruption's draws never shift another's."""
    name_key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
    return np.random.default_rng([seed, name_key])


def corrupt_with_severities(images: np.ndarray, name: str, severity: Severity, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Corrupted images and the severity used for each (already-validated arguments)."""
    function = CORRUPTIONS[name]
    rng = _rng(seed, name)
    if severity == "random":
        severities = rng.integers(1, 6, size=len(images)).astype(np.uint8)
    else:
        severities = np.full(len(images), severity, dtype=np.uint8)
    out = np.empty_like(images)
    for level in np.unique(severities):
        chosen = severities == level
        out[chosen] = function(images[chosen], int(level), rng)
    return out, severities


def corrupt(images: np.ndarray, name: str, severity: Severity = "random", seed: int = 0) -> np.ndarray:
    """One corruption of a batch, a pure function of ``(images, name, severity, seed)``.

    ``severity="random"`` draws each image's severity from 1..5 (as Fashion-MNIST-C does); an
    integer applies that severity to all images.
    """
    check_name(name)
    return corrupt_with_severities(check_images(images), name, check_severity(severity), check_seed(seed))[0]


def generate(images: np.ndarray, *, seed: int = 0, severity: Severity = "random",
             names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Every corruption (or those in ``names``) of ``images``, keyed by name in registry order."""
    images, severity, seed = check_images(images), check_severity(severity), check_seed(seed)
    return {name: corrupt_with_severities(images, name, severity, seed)[0] for name in check_names(names)}
