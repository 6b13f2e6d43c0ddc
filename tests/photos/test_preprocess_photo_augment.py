"""Photo-like batch augmentation (configs/photo.yaml): aspect, reframe, gamma, blur, noise, share.

Shape, dtype and range are kept, the draws are seeded, each option does what a framed photo
needs (reframe restores Fashion-MNIST's frame, noise leaves the black background alone), and
the defaults leave the existing augmentation untouched draw for draw.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from fmnist.commands.shims import train_py as train_main
from fmnist.data.augment import AugmentSettings, BatchAugment, reframe
from fmnist.data.datamodule import ImageDataModule

PHOTO = dict(rotation=0.03, zoom=0.0, contrast=0.0, fill_mode="constant", random_erasing=0.2, hflip=True,
             aspect=0.5, reframe=True, gamma=0.4, blur=0.6, noise=0.06)


def garments(n: int = 8, seed: int = 0) -> torch.Tensor:
    """[n, 1, 28, 28] in [0, 1]: textured tall blocks spanning the full height on black (a product's frame)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, :, 7:21] = 0.3 + 0.7 * torch.rand(n, 1, 28, 14, generator=generator)
    return x


def box(image: torch.Tensor) -> tuple[int, int, int, int]:
    rows = torch.nonzero(image.squeeze(0).any(dim=1)).flatten()
    cols = torch.nonzero(image.squeeze(0).any(dim=0)).flatten()
    return int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1


def test_photo_augmentation_keeps_shape_dtype_and_range_and_is_seeded() -> None:
    x = garments()
    aug = BatchAugment(**PHOTO)
    torch.manual_seed(3)
    first = aug(x)
    torch.manual_seed(3)
    again = aug(x)
    assert first.shape == x.shape and first.dtype == x.dtype
    assert first.min() >= 0.0 and first.max() <= 1.0
    assert torch.equal(first, again)
    assert not torch.equal(first, aug(x))  # new draws, new images
    assert "reframe=True" in repr(aug)


def test_reframe_restores_the_dataset_frame() -> None:
    x = torch.zeros(3, 1, 28, 28)
    x[0, :, 5:15, 3:8] = 1.0  # small, off-centre, tall
    x[1, :, 10:14, 2:22] = 0.5  # wide bar
    # x[2] stays empty
    framed = reframe(x)
    assert box(framed[0] > 0.5) == (0, 28, 7, 21)  # 10 x 5 -> 28 x 14, centred
    top, bottom, left, right = box(framed[1] > 0.25)
    assert (left, right) == (0, 28) and abs((top + bottom) / 2 - 14) <= 1
    assert torch.equal(framed[2], x[2])
    full = garments(2)
    full[:, :, :, 7:21] = 0.7
    assert torch.allclose(reframe(full), full, atol=1e-5)  # already framed: unchanged


@pytest.mark.parametrize(("rows", "cols"), [(slice(0, 8), slice(0, 8)), (slice(20, 28), slice(20, 28)),
                                           (slice(0, 8), slice(20, 28)), (slice(20, 28), slice(0, 8))])
def test_reframe_of_a_block_in_a_corner_fills_the_frame(rows: slice, cols: slice) -> None:
    """An 8 x 8 block touching two edges of the frame: its box is exactly the block (the first and last row and
    column count), so it is scaled 3.5x to fill the whole 28 x 28 frame."""
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, rows, cols] = 1.0
    framed = reframe(x)
    assert box(framed[0] > 0.5) == (0, 28, 0, 28)
    assert framed[0, 0, 4:24, 4:24].min() > 0.99  # bilinear edges aside, all of it


def test_reframe_centres_a_bar_wherever_it_lies_even_on_the_first_row_or_column() -> None:
    """A one-pixel bar across the frame is centred: on row 0 or row 10 (column 0 or 10), the same image."""
    bars = torch.zeros(4, 1, 28, 28)
    bars[0, 0, 0, :] = bars[1, 0, 10, :] = 1.0  # across, on the first row and on row 10
    bars[2, 0, :, 0] = bars[3, 0, :, 10] = 1.0  # down, on the first column and on column 10
    framed = reframe(bars)
    assert torch.allclose(framed[0], framed[1], atol=1e-6) and torch.allclose(framed[2], framed[3], atol=1e-6)
    assert framed[0, 0].sum(dim=1).argmax() in (13, 14) and framed[2, 0].sum(dim=0).argmax() in (13, 14)


def test_aspect_widens_or_narrows_and_reframe_keeps_the_longest_side_full() -> None:
    aug = BatchAugment(rotation=0.0, zoom=0.0, contrast=0.0, fill_mode="constant", aspect=1.0, reframe=True)
    torch.manual_seed(0)
    out = aug(garments(32))
    widths = []
    for image in out:
        top, bottom, left, right = box(image > 0)
        widths.append(right - left)
        assert max(bottom - top, right - left) == 28
    assert min(widths) < 12 and max(widths) > 17  # 14 wide before: narrowed and widened


def test_gamma_keeps_black_and_white_and_bends_the_middle() -> None:
    x = torch.tensor([0.0, 0.25, 1.0]).view(1, 1, 1, 3).repeat(64, 1, 1, 1)
    torch.manual_seed(0)
    out = BatchAugment(rotation=0.0, zoom=0.0, contrast=0.0, gamma=0.5)(x)
    assert torch.all(out[..., 0] == 0) and torch.allclose(out[..., 2], torch.ones(64, 1, 1))
    middle = out[..., 1].flatten()
    assert middle.min() < 0.2 < 0.3 < middle.max() <= 0.25 ** 0.6 + 1e-6


def test_blur_spreads_a_point_and_keeps_its_mass() -> None:
    x = torch.zeros(16, 1, 28, 28)
    x[:, :, 14, 14] = 1.0
    torch.manual_seed(0)
    out = BatchAugment(rotation=0.0, zoom=0.0, contrast=0.0, blur=1.0)(x)
    assert torch.allclose(out.sum(dim=(1, 2, 3)), torch.ones(16), atol=1e-4)
    centre = out[:, 0, 14, 14]
    assert centre.min() < 0.3 and centre.max() > 0.9  # sigma drawn per image in [0, 1]


def test_noise_touches_the_garment_only() -> None:
    x = garments()
    torch.manual_seed(0)
    out = BatchAugment(rotation=0.0, zoom=0.0, contrast=0.0, noise=0.2)(x)
    background = x == 0
    assert torch.equal(out[background], x[background])
    assert (out[~background] - x[~background]).abs().max() > 0.05


def test_share_leaves_the_other_images_clean() -> None:
    x = garments(64)
    torch.manual_seed(0)
    out = BatchAugment(**PHOTO, share=0.5)(x)
    same = sum(torch.equal(a, b) for a, b in zip(out, x, strict=True))
    assert 16 < same < 48
    assert torch.equal(BatchAugment(**PHOTO, share=0.0)(x), x)


def test_defaults_leave_the_existing_augmentation_unchanged() -> None:
    x = garments()
    torch.manual_seed(5)
    before = BatchAugment(random_erasing=0.3, hflip=True, translate=0.1)(x)
    torch.manual_seed(5)
    after = BatchAugment(random_erasing=0.3, hflip=True, translate=0.1, aspect=0.0, reframe=False, gamma=0.0,
                         blur=0.0, noise=0.0, share=1.0)(x)
    assert torch.equal(before, after)


@pytest.mark.parametrize(("kwargs", "message"), [({"gamma": -0.1}, "gamma must be >= 0"),
                                                 ({"share": 1.5}, "share must be in")])
def test_bad_strengths_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BatchAugment(**kwargs)


def test_the_data_module_passes_the_photo_options_on() -> None:
    data = ImageDataModule(augment=AugmentSettings(enabled=True, **PHOTO, share=0.5))
    aug = data.augmenter
    assert isinstance(aug, BatchAugment)
    assert (aug.aspect, aug.reframe, aug.gamma, aug.blur, aug.noise, aug.share) == (0.5, True, 0.4, 0.6, 0.06, 0.5)


def test_the_shipped_photo_config_reaches_the_data_module_as_written(capsys: pytest.CaptureFixture) -> None:
    """configs/photo.yaml parses on the real CLI and its photo options arrive unchanged (a typo would cost a
    half-hour training run)."""
    config = Path(__file__).resolve().parents[2] / "configs" / "photo.yaml"
    with pytest.raises(SystemExit) as exit_info:
        train_main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    data = yaml.safe_load(capsys.readouterr().out)["data"]
    written = yaml.safe_load(config.read_text())["data"]
    assert {k: data[k] for k in written if k != "augment"} == {k: v for k, v in written.items() if k != "augment"}
    assert {k: data["augment"][k] for k in written["augment"]} == written["augment"]
    assert data["augment"]["reframe"] is True and data["augment"]["share"] == 0.5
