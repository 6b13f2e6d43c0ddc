"""From a photo to a 28x28 Fashion-MNIST-like input: study B's ``plain``, ``ours`` and ``fashion``.

``fashion`` (GrabCut segmentation + Fashion-MNIST's own framing) is the recommended recipe;
``plain`` and ``ours`` stay so that earlier measurements remain reproducible (docs/photos.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from fmnist.errors import FmnistError
from fmnist.photos.framing import fashion_frame
from fmnist.photos.segment import segment_garment

# ----------------------------------------------------------------------------- preprocessing

SIZE = 28  # Fashion-MNIST's side: every recipe ends in a SIZE x SIZE uint8 image


def preprocess_plain(image: Image.Image, size: int = SIZE) -> np.ndarray:
    """Study B §6: ``convert('L')``, ``255 - x``, LANCZOS resize to 28x28 (uint8; the model divides by 255)."""
    gray = image.convert("L").point(lambda x: 255 - x)
    return np.asarray(gray.resize((size, size), Image.LANCZOS), dtype=np.uint8).copy()


@dataclass
class Preprocessed:
    """The 28x28 input and what the recipe decided, for the saved debug view and tests."""

    pixels: np.ndarray  # uint8 [28, 28]
    inverted: bool = False
    box: tuple[int, int, int, int] | None = None  # left, top, right, bottom in the photo
    background: float = 0.0  # grey level of the border (0-255, before inversion)
    mask: np.ndarray | None = None  # bool garment mask on ``work`` (recipes that segment)
    work: np.ndarray | None = None  # uint8 RGB photo the mask was computed on (downscaled)
    segmented: bool = True  # False when no garment was found and the whole frame was used


_WORK_SIDE = 256  # masks are computed on a downscaled copy: fast, and blur-free enough


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold of values in [0, 255] (between-class variance maximum)."""
    hist, edges = np.histogram(values, bins=256, range=(0.0, 256.0))
    p = hist.astype(np.float64) / max(1, hist.sum())
    omega = np.cumsum(p)
    mu = np.cumsum(p * edges[:-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu[-1] * omega - mu) ** 2 / (omega * (1.0 - omega))
    between = np.nan_to_num(between)
    return float(edges[int(np.argmax(between))])


def _border(a: np.ndarray, width: int) -> np.ndarray:
    return np.concatenate([a[:width].reshape(-1, *a.shape[2:]), a[-width:].reshape(-1, *a.shape[2:]),
                           a[:, :width].reshape(-1, *a.shape[2:]), a[:, -width:].reshape(-1, *a.shape[2:])])


def _foreground_box(rgb: np.ndarray, background: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Soft foreground mask in [0, 1] and the robust bounding box of the object, in work-image pixels.

    Foreground = colour distance from the border colour above Otsu's threshold, after a
    median filter (kills floor texture and JPEG noise). The box spans the 1st-99th
    percentiles of foreground pixel coordinates, so stray specks do not widen it.
    """
    distance = np.sqrt(((rgb - background) ** 2).sum(axis=2))
    distance = np.clip(distance, 0, 255).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(distance).filter(ImageFilter.MedianFilter(5)), dtype=np.float32)
    threshold = max(_otsu(smooth), 18.0)
    mask = smooth > threshold
    height, width = mask.shape
    if mask.sum() < 0.01 * mask.size:  # nothing stands out: keep the whole frame
        return np.ones_like(smooth), (0, 0, width, height)
    ys, xs = np.nonzero(mask)
    left, right = np.percentile(xs, [1, 99])
    top, bottom = np.percentile(ys, [1, 99])
    box = (int(left), int(top), int(np.ceil(right)) + 1, int(np.ceil(bottom)) + 1)
    soft = np.clip((smooth - 0.5 * threshold) / max(1e-6, 0.5 * threshold), 0.0, 1.0)
    soft = np.asarray(Image.fromarray((soft * 255).astype(np.uint8)).filter(ImageFilter.MaxFilter(3))
                      .filter(ImageFilter.GaussianBlur(1.5)), dtype=np.float32) / 255.0
    return soft, box


def preprocess_ours(image: Image.Image, size: int = SIZE) -> Preprocessed:
    """Make a photo look like a Fashion-MNIST image (bright garment on black, filling the frame).

    1. Background colour = median of a thin border ring; it is *light* if its grey level > 127.
    2. Grey image, inverted only for a light background (so the garment ends up brighter
       than the background, as in Fashion-MNIST's negated product shots).
    3. Garment = pixels far (in colour) from the background; crop to their bounding box,
       set the rest to black (Fashion-MNIST backgrounds are exactly 0), stretch the
       garment to the full 0-255 range.
    4. Pad to a square (centred, black) and LANCZOS-resize to 28x28, as Fashion-MNIST
       resized the longest edge to 28.
    """
    work = image.convert("RGB")
    scale = _WORK_SIDE / max(work.size)
    if scale < 1:
        work = work.resize((max(1, round(work.width * scale)), max(1, round(work.height * scale))), Image.BILINEAR)
    rgb = np.asarray(work, dtype=np.float32)
    gray = np.asarray(work.convert("L"), dtype=np.float32)
    ring = max(1, round(0.03 * min(gray.shape)))
    background_rgb = np.median(_border(rgb, ring), axis=0)
    background = float(np.median(_border(gray, ring)))
    inverted = background > 127.0
    signal = 255.0 - gray if inverted else gray
    bg_signal = 255.0 - background if inverted else background
    mask, (left, top, right, bottom) = _foreground_box(rgb, background_rgb)
    # Garment brightness = its grey distance from the background level, kept where the mask
    # says "garment". For a dark garment on a light floor that is exactly "inverted minus
    # background"; taking the magnitude keeps the parts lighter than a light background (a
    # white shirt on a beige bed) that plain inversion would turn black.
    out = np.abs(signal - bg_signal) * mask
    crop = out[top:bottom, left:right]
    inside = crop[mask[top:bottom, left:right] > 0.5]
    high = float(np.percentile(inside, 99)) if inside.size else float(crop.max(initial=0.0))
    if high > 1e-3:
        crop = np.clip(crop * (255.0 / high), 0.0, 255.0)
    h, w = crop.shape
    side = max(h, w)
    square = np.zeros((side, side), dtype=np.float32)
    y0, x0 = (side - h) // 2, (side - w) // 2
    square[y0:y0 + h, x0:x0 + w] = crop
    small = Image.fromarray(square.astype(np.uint8)).resize((size, size), Image.LANCZOS)
    full_box = tuple(int(round(v / min(scale, 1.0))) for v in (left, top, right, bottom))
    return Preprocessed(np.asarray(small, dtype=np.uint8).copy(), inverted, full_box, background)  # type: ignore[arg-type]


def preprocess_fashion(image: Image.Image) -> Preprocessed:
    """Segment the garment and frame it the way Fashion-MNIST framed its products.

    1. GrabCut seeded from the photo's border, largest component, holes filled
       (:mod:`fmnist.photos.segment`): the background becomes exactly 0.
    2. Grey level, negated (the dataset negated product shots to light-on-black), scaled so
       the garment's 99th percentile is 255 (the dataset's per-image 8-bit range).
    3. Trim to the garment's bounding box, longest side to 28 with the aspect kept, centred
       (:mod:`fmnist.photos.framing`).

    The dataset's sharpening step is left out: it restored edges that subsampling a smooth
    product shot had blurred, while a phone photo brings its own wrinkles and fabric texture,
    which sharpening doubles. Measured on the development photos with the photo model
    (docs/photos.md): 66.5% with sharpening, 72.6% without.
    """
    rgb = np.asarray(image.convert("RGB"))
    segmentation = segment_garment(rgb)
    gray = np.asarray(Image.fromarray(segmentation.rgb).convert("L"), dtype=np.float32)
    pixels = fashion_frame(255.0 - gray, segmentation.mask, sharpen_sigma=0.0)
    ys, xs = np.nonzero(segmentation.mask)
    box = tuple(int(round(v / segmentation.scale)) for v in (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return Preprocessed(pixels, inverted=True, box=box, background=float(np.median(border)),  # type: ignore[arg-type]
                        mask=segmentation.mask, work=segmentation.rgb, segmented=segmentation.found)


def _plain(image: Image.Image) -> Preprocessed:
    return Preprocessed(preprocess_plain(image), inverted=True)


PREPROCESSORS: dict[str, Callable[[Image.Image], Preprocessed]] = {
    "fashion": preprocess_fashion, "ours": preprocess_ours, "plain": _plain}
#: What ``predict`` uses unless told otherwise (measured best on the photo development set, docs/photos.md).
RECOMMENDED = "fashion"


def preprocess(image: Image.Image, recipe: str = RECOMMENDED) -> Preprocessed:
    """Run the named recipe (``fashion``, ``ours`` or ``plain``) on one photo."""
    if recipe not in PREPROCESSORS:
        raise FmnistError(f"unknown preprocessing {recipe!r}; choose one of: {', '.join(PREPROCESSORS)}.")
    return PREPROCESSORS[recipe](image)


