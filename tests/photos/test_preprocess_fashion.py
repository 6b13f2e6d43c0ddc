"""The ``fashion`` preprocessing: GrabCut segmentation and Fashion-MNIST's own framing.

Synthetic "photos" (a drawn garment on a textured floor) check that the garment is found,
framed like the dataset (longest side spanning the frame, centred, black background, the
top of its range at 255) and that the result is deterministic. The dataset's measured frame
and the accuracy on the real photo development set are checked where the data is present.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from fmnist.errors import FmnistError
from fmnist.photos.framing import FASHION_FRAME, bounding_box, fashion_frame, measure_frame, sharpen
from fmnist.photos.preprocess import PREPROCESSORS, RECOMMENDED, preprocess, preprocess_fashion
from fmnist.photos.segment import grabcut_mask, largest_component, segment_garment

# -- synthetic photos -----------------------------------------------------------------------------------------


def wood_floor(size: tuple[int, int] = (300, 400), seed: int = 0) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]``: brown planks with grain and noise -- a textured, non-uniform background."""
    rng = np.random.default_rng(seed)
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    grain = 18 * np.sin(xs / 3.0 + 4 * np.sin(ys / 40.0)) + 10 * ((xs // 50) % 2)
    base = np.stack([150 + grain, 105 + 0.8 * grain, 70 + 0.5 * grain], axis=-1)
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


def tshirt_polygon(size: tuple[int, int] = (300, 400), box: tuple[float, ...] = (0.2, 0.15, 0.8, 0.85)):
    """Vertices of a flat-laid T-shirt (body + two short sleeves) inside ``box`` (fractions of the photo)."""
    width, height = size
    x0, y0, x1, y1 = box[0] * width, box[1] * height, box[2] * width, box[3] * height
    w, h = x1 - x0, y1 - y0
    return [(x0 + 0.3 * w, y0), (x0 + 0.7 * w, y0), (x1, y0 + 0.2 * h), (x0 + 0.85 * w, y0 + 0.38 * h),
            (x0 + 0.78 * w, y0 + 0.3 * h), (x0 + 0.78 * w, y1), (x0 + 0.22 * w, y1), (x0 + 0.22 * w, y0 + 0.3 * h),
            (x0 + 0.15 * w, y0 + 0.38 * h), (x0, y0 + 0.2 * h)]


def garment_photo(colour: tuple[int, int, int] = (40, 60, 150), size: tuple[int, int] = (300, 400),
                  box: tuple[float, ...] = (0.2, 0.15, 0.8, 0.85), seed: int = 0) -> tuple[Image.Image, np.ndarray]:
    """A T-shirt of one colour (with a light print) on a wood floor, and its true mask."""
    floor = Image.fromarray(wood_floor(size, seed))
    truth = Image.new("L", size, 0)
    polygon = tshirt_polygon(size, box)
    ImageDraw.Draw(truth).polygon(polygon, fill=255)
    shirt = Image.new("RGB", size, colour)
    ImageDraw.Draw(shirt).rectangle([size[0] * 0.42, size[1] * 0.35, size[0] * 0.58, size[1] * 0.45],
                                    fill=(230, 230, 230))  # a print: must not become a hole
    floor.paste(shirt, (0, 0), truth)
    return floor, np.asarray(truth) > 127


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


# -- segmentation ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("colour", [(40, 60, 150), (235, 235, 230), (20, 20, 20)])
def test_grabcut_finds_the_garment_on_a_textured_floor(colour: tuple[int, int, int]) -> None:
    photo, truth = garment_photo(colour)
    segmentation = segment_garment(np.asarray(photo))
    assert segmentation.found and segmentation.mask.dtype == bool
    small_truth = cv2.resize(truth.astype(np.uint8), segmentation.mask.shape[::-1],
                             interpolation=cv2.INTER_NEAREST).astype(bool)
    assert iou(segmentation.mask, small_truth) > 0.9
    assert max(segmentation.mask.shape) == 200 and segmentation.scale == pytest.approx(0.5)


def test_segmentation_is_deterministic_whatever_ran_before() -> None:
    photo = np.asarray(garment_photo(seed=3)[0])
    first = grabcut_mask(photo)
    cv2.setRNGSeed(12345)  # OpenCV's global RNG moved by someone else
    grabcut_mask(np.asarray(garment_photo((200, 30, 30), seed=4)[0]))
    assert np.array_equal(grabcut_mask(photo), first)
    assert np.array_equal(preprocess_fashion(Image.fromarray(photo)).pixels,
                          preprocess_fashion(Image.fromarray(photo)).pixels)


def test_largest_component_drops_specks_and_fills_holes() -> None:
    mask = np.zeros((40, 40), dtype=bool)
    mask[5:30, 5:30] = True
    mask[12:16, 12:16] = False  # a hole (a print) inside the garment
    mask[35:38, 35:38] = True  # a speck elsewhere
    solid = largest_component(mask)
    assert solid[12:16, 12:16].all() and not solid[35:38, 35:38].any() and solid.sum() == 25 * 25


def test_a_plain_photo_keeps_the_whole_frame_and_says_so() -> None:
    result = preprocess(Image.new("RGB", (120, 160), (128, 120, 110)), "fashion")
    assert not result.segmented and result.pixels.shape == (28, 28) and result.pixels.dtype == np.uint8


# -- framing --------------------------------------------------------------------------------------------------


def test_fashion_frame_keeps_the_aspect_fills_the_longest_side_and_centres() -> None:
    mask = np.zeros((200, 150), dtype=bool)
    mask[20:180, 60:100] = True  # a tall garment, 160 x 40, off-centre
    signal = np.where(mask, 100.0, 0.0).astype(np.float32)
    pixels = fashion_frame(signal, mask, frame=FASHION_FRAME, sharpen_sigma=0)
    top, bottom, left, right = bounding_box(pixels > 0)
    assert (top, bottom) == (0, 28)  # the dataset's frame: no margin along the longest side
    assert right - left == 7  # 160:40 kept -> 28:7
    assert left == (28 - 7) // 2  # centred
    assert pixels.max() == 255  # gain to the dataset's per-image range
    wide = fashion_frame(signal.T.copy(), mask.T.copy(), sharpen_sigma=0)
    assert bounding_box(wide > 0)[2:] == (0, 28)


def test_sharpening_acts_at_outlines_only() -> None:
    step = np.zeros((28, 28), dtype=np.float32)
    step[4:24, 4:24] = 100.0
    sharp = sharpen(step, sigma=1.0)
    assert sharp[4, 14] > 100.0 and sharp[3, 14] < 0.0  # overshoot inside the edge, undershoot outside
    assert sharp[14, 14] == pytest.approx(100.0, abs=1e-3) and sharp[0, 0] == pytest.approx(0.0, abs=1e-3)


def test_fashion_recipe_frames_a_synthetic_photo_like_the_dataset() -> None:
    photo, _ = garment_photo((40, 60, 150), box=(0.1, 0.3, 0.6, 0.8))  # off-centre, wider than tall
    result = preprocess(photo, "fashion")
    pixels = result.pixels
    assert result.inverted and result.segmented and pixels.shape == (28, 28) and pixels.dtype == np.uint8
    top, bottom, left, right = bounding_box(pixels > 0)
    assert max(bottom - top, right - left) >= 27  # longest side spans the frame
    assert abs((left + right) / 2 - 14) <= 1.5 and abs((top + bottom) / 2 - 14) <= 1.5
    assert pixels[0, 0] == 0 and pixels[-1, -1] == 0  # background exactly 0, as in Fashion-MNIST
    assert pixels.max() == 255
    left_px, top_px, right_px, bottom_px = result.box
    assert abs(left_px - 30) <= 8 and abs(right_px - 180) <= 8 and abs(top_px - 120) <= 8  # in photo pixels


def test_recipes_are_named_and_unknown_names_get_one_sentence() -> None:
    assert {"plain", "ours", "fashion"} <= set(PREPROCESSORS) and RECOMMENDED == "fashion"
    with pytest.raises(FmnistError, match="unknown preprocessing 'segment'; choose one of"):
        preprocess(Image.new("RGB", (40, 40)), "segment")


def test_measure_frame_on_drawn_images() -> None:
    images = np.zeros((4, 28, 28), dtype=np.uint8)
    images[0, :, 10:18] = 255  # tall, full height, centred
    images[1, 5:20, 0:28] = 100  # wide, full width, centred on row 12
    images[2, 4:24, 6:22] = 200  # with a margin
    images[3, :, 4:24] = 250
    stats = measure_frame(images)
    assert stats.longest_side == 28 and stats.full_frame_share == 0.75
    assert stats.reaches_255 == 0.25 and stats.foreground_mean == pytest.approx(225.0)
    assert stats.centre_offset == 0.0  # offsets 0, 1.5 (the wide one), 0, 0


def test_the_stored_frame_is_what_the_training_images_measure(real_fashion_root: str) -> None:
    from fmnist.data.sources import load_dataset

    measured = measure_frame(load_dataset("fashion", real_fashion_root).train_images.numpy())
    for name, value in vars(FASHION_FRAME).items():
        assert getattr(measured, name) == pytest.approx(value, abs=0.05 if name.startswith("fore") else 0.001), name


# -- the real development photos ------------------------------------------------------------------------------


def _photos_dir() -> Path | None:
    for root in (os.environ.get("FMNIST_DATA_DIR"), str(Path(__file__).resolve().parents[3] / "shared" / "data")):
        if root and (Path(root) / "wild" / "labels.csv").is_file():
            return Path(root) / "wild"
    return None


@pytest.mark.slow
def test_photo_model_reaches_the_goal_on_the_development_photos(tmp_path: Path) -> None:
    """``FMNIST_PHOTO_CHECKPOINT`` (a run trained with configs/photo.yaml) on the 215 photos: >= 75%."""
    photos = _photos_dir()
    checkpoint = os.environ.get("FMNIST_PHOTO_CHECKPOINT")
    if photos is None or not checkpoint or not Path(checkpoint).exists():
        pytest.skip("needs the photo set (FMNIST_DATA_DIR/wild) and FMNIST_PHOTO_CHECKPOINT=<photo run or .ckpt>")
    import json

    from fmnist.commands.shims import evaluate_py as main

    out = tmp_path / "photos"
    assert main(["predict", checkpoint, str(photos), "--out", str(out)]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["n"] == 215 and summary["preprocess"] == "fashion"
    assert summary["accuracy"] >= 0.75
