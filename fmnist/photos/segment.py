"""Garment segmentation for ordinary photos: OpenCV GrabCut seeded from the photo's border.

Why GrabCut: a phone photo of one garment has a background that is textured (wood, carpet,
bed covers) but whose colours are well sampled by the border of the frame, and a garment
whose colours are not. GrabCut (Rother et al. 2004) fits one colour mixture to each and cuts
the graph between them, so it handles backgrounds a single threshold cannot, runs offline
and needs no trained model. The seed is the only prior: the outermost ring of the photo is
background, a band a little wider is *probably* background (a trouser leg or a sleeve cut by
the photo's edge can still be claimed by the garment), and the rest is probably garment. The
result is
cleaned the classical way: the largest connected component with its holes filled (a
garment is one solid piece; prints and buttons do not make holes in it).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Border band (fraction of each side) that seeds GrabCut's background model as "probably background".
INSET = 0.06
#: Outermost ring (fraction of each side, at least one pixel) taken as certainly background.
RING = 0.01
#: GrabCut's EM iterations (OpenCV's examples use 5; the cut hardly changes after that).
ITERATIONS = 5
#: Segmentation runs on a copy whose longest side is this many pixels: fast, and still
#: seven times finer than the 28-pixel output.
WORK_SIDE = 200
#: A mask smaller than this share of the frame is not a garment found: the frame is used whole.
MIN_AREA = 0.02


@dataclass
class Segmentation:
    """The garment mask at working resolution and the image it was computed on."""

    rgb: np.ndarray  # uint8 [h, w, 3], the downscaled photo
    mask: np.ndarray  # bool [h, w], True on the garment
    scale: float  # working pixels per photo pixel (<= 1)
    found: bool  # False when nothing garment-sized was found and the mask is the whole frame


def to_work_size(rgb: np.ndarray, side: int = WORK_SIDE) -> tuple[np.ndarray, float]:
    """Downscale (never upscale) so the longest side is ``side``; INTER_AREA averages, so no aliasing."""
    height, width = rgb.shape[:2]
    scale = min(1.0, side / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(rgb), scale


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a boolean mask, with its holes filled."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(mask, dtype=bool)
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    solid = (labels == biggest).astype(np.uint8)
    # Holes = background pixels not reachable from outside: flood the padded complement from a corner.
    padded = np.pad(1 - solid, 1, constant_values=1)
    flood = padded.copy()
    cv2.floodFill(flood, np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), np.uint8), (0, 0), 2)
    holes = (flood[1:-1, 1:-1] == 1)
    return solid.astype(bool) | holes


def border_seed(height: int, width: int, inset: float = INSET, ring: float = RING) -> np.ndarray:
    """GrabCut's initial labels: certain background on the outer ring, probable background on the
    band ``inset`` wide, probable garment inside."""
    seed = np.full((height, width), cv2.GC_PR_FGD, np.uint8)
    for fraction, label in ((inset, cv2.GC_PR_BGD), (ring, cv2.GC_BGD)):
        dx, dy = max(1, round(fraction * width)), max(1, round(fraction * height))
        seed[:dy], seed[-dy:], seed[:, :dx], seed[:, -dx:] = label, label, label, label
    return seed


def grabcut_mask(rgb: np.ndarray, inset: float = INSET, iterations: int = ITERATIONS) -> np.ndarray:
    """GrabCut seeded by :func:`border_seed`; returns the (probable) garment as bool.

    OpenCV's GMM initialisation draws from its global RNG, so it is reseeded first: the same
    photo always gives the same mask, whatever ran before.
    """
    mask = border_seed(*rgb.shape[:2], inset=inset)
    background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    cv2.grabCut(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), mask, None, background, foreground, iterations,
                cv2.GC_INIT_WITH_MASK)
    return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)


def segment_garment(rgb: np.ndarray, inset: float = INSET, iterations: int = ITERATIONS,
                    work_side: int = WORK_SIDE) -> Segmentation:
    """Segment the single garment of an RGB photo (uint8 ``[H, W, 3]``).

    GrabCut on a downscaled copy, a 3x3 opening against speckle at the cut, then the largest
    component with holes filled. Photos too small for a seed rectangle, or where nothing
    garment-sized is found, keep the whole frame and say so (``found=False``).
    """
    work, scale = to_work_size(rgb, work_side)
    height, width = work.shape[:2]
    whole = np.ones((height, width), dtype=bool)
    if min(height, width) < 8:
        return Segmentation(work, whole, scale, found=False)
    mask = grabcut_mask(work, inset, iterations)
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)).astype(bool)
    mask = largest_component(mask)
    if mask.sum() < MIN_AREA * mask.size:
        return Segmentation(work, whole, scale, found=False)
    return Segmentation(work, mask, scale, found=True)
