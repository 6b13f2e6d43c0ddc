"""Put a segmented garment into Fashion-MNIST's own frame.

Fashion-MNIST was made from product shots on white by (Xiao et al. 2017, §2): trimming to
the product's bounding box, resizing the longest edge to 28, sharpening with a Gaussian of
radius and sigma 1, centring on the 28x28 canvas, negating and converting to 8-bit grey. A
photo framed any other way (a margin, a stretched aspect, a different brightness range) is
an input the network never saw. The frame's numbers are *measured* on the training images
by :func:`measure_frame` (``FASHION_FRAME`` holds the result; a real-data test re-measures
it) rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SIZE = 28


@dataclass(frozen=True)
class FrameStats:
    """How Fashion-MNIST's training images sit in their 28x28 frame (pixels > 0 are the product)."""

    longest_side: float  # median extent of the product's bounding box along its longer side, in pixels
    full_frame_share: float  # share of images whose longer side spans the whole frame (no margin)
    centre_offset: float  # median |box centre - frame centre| along the shorter side, in pixels
    reaches_255: float  # share of images whose brightest pixel is 255 (per-image max normalisation)
    foreground_mean: float  # median over images of the mean product pixel (0-255)
    foreground_std: float  # median over images of the std of product pixels


def measure_frame(images: np.ndarray) -> FrameStats:
    """Measure :class:`FrameStats` on uint8 images ``[N, 28, 28]`` (the Fashion-MNIST training set)."""
    product = images > 0
    rows, cols = product.any(axis=2), product.any(axis=1)

    def extent(lines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        first = lines.argmax(axis=1)
        last = lines.shape[1] - 1 - lines[:, ::-1].argmax(axis=1)
        return first, last

    top, bottom = extent(rows)
    left, right = extent(cols)
    height, width = bottom - top + 1, right - left + 1
    longest = np.maximum(height, width)
    side = images.shape[-1]
    short_centre = np.where(height >= width, (left + right) / 2, (top + bottom) / 2)
    values = images.astype(np.float32)
    counts = np.maximum(product.sum(axis=(1, 2)), 1)
    means = (values * product).sum(axis=(1, 2)) / counts
    squares = (values ** 2 * product).sum(axis=(1, 2)) / counts
    stds = np.sqrt(np.maximum(squares - means ** 2, 0.0))
    return FrameStats(
        longest_side=float(np.median(longest)),
        full_frame_share=float((longest == side).mean()),
        centre_offset=float(np.median(np.abs(short_centre - (side - 1) / 2))),
        reaches_255=float((images.reshape(len(images), -1).max(axis=1) == 255).mean()),
        foreground_mean=float(np.median(means)),
        foreground_std=float(np.median(stds)),
    )


#: ``measure_frame`` on the 60,000 Fashion-MNIST training images (tests/photos re-measures it on the real data).
FASHION_FRAME = FrameStats(longest_side=28.0, full_frame_share=0.983, centre_offset=0.5, reaches_255=0.916,
                           foreground_mean=150.7, foreground_std=61.2)


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` of the True pixels, bottom/right exclusive."""
    ys, xs = np.nonzero(mask)
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def sharpen(image: np.ndarray, sigma: float = 1.0, amount: float = 1.0) -> np.ndarray:
    """Unsharp mask with a Gaussian of ``sigma`` (Fashion-MNIST's step 4): strongest at outlines."""
    blurred = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_CONSTANT)
    return image + amount * (image - blurred)


def stretch(signal: np.ndarray, mask: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """Scale the garment so its ``percentile`` reaches 255, like the dataset's per-image 8-bit conversion.

    A pure gain (no offset): a plain garment stays plain, a dark one stays darker than its
    print, only the photo's exposure is undone. Outside the mask is 0, as in the dataset.
    """
    inside = signal[mask]
    high = float(np.percentile(inside, percentile)) if inside.size else 0.0
    gain = 255.0 / high if high > 1e-3 else 0.0
    return np.clip(signal * gain, 0.0, 255.0) * mask


def fashion_frame(signal: np.ndarray, mask: np.ndarray, size: int = SIZE, frame: FrameStats = FASHION_FRAME,
                  sharpen_sigma: float = 1.0) -> np.ndarray:
    """Light-on-black garment (float ``[H, W]``, 0-255, garment where ``mask``) -> uint8 ``[size, size]``.

    Trim to the mask's bounding box, resize its longest side to the measured longest side of
    Fashion-MNIST's products (the whole frame) keeping the aspect, centre on black, and sharpen
    when ``sharpen_sigma`` > 0 (the dataset's step; the photo recipe leaves it out, see
    :func:`fmnist.photos.preprocess.preprocess_fashion`).
    """
    if not mask.any():
        return np.zeros((size, size), dtype=np.uint8)
    top, bottom, left, right = bounding_box(mask)
    crop = (stretch(signal, mask) * mask)[top:bottom, left:right].astype(np.float32)
    height, width = crop.shape
    longest = max(1, min(size, round(frame.longest_side * size / SIZE)))
    scale = longest / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(crop, (new_w, new_h), interpolation=interpolation)
    canvas = np.zeros((size, size), dtype=np.float32)
    y0, x0 = (size - new_h) // 2, (size - new_w) // 2
    canvas[y0:y0 + new_h, x0:x0 + new_w] = small
    if sharpen_sigma > 0:
        canvas = sharpen(canvas, sharpen_sigma)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
