"""Batch augmentation: shape/range kept, per-sample randomness, identity at zero, device, training only."""

from __future__ import annotations

import math
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from fmnist.data.augment import AugmentSettings, BatchAugment, _affine_grid
from fmnist.data.datamodule import ImageDataModule
from fmnist.data.transforms import to_unit_float

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")),
]


def bar_image(n: int = 1, size: int = 28) -> torch.Tensor:
    """[n, 1, size, size]: a centred horizontal bar (rows 12-15, cols 4-23) on black."""
    x = torch.zeros(n, 1, size, size)
    x[:, :, 12:16, 4:24] = 1.0
    return x


def ell_image(size: int = 28) -> torch.Tensor:
    """[1, 1, size, size]: an asymmetric L (so a rotation's direction is visible) centred on the image."""
    x = torch.zeros(1, 1, size, size)
    x[:, :, 6:22, 10:14] = 1.0
    x[:, :, 18:22, 10:20] = 0.6
    return x


def fixed_draws(aug: BatchAugment, at: str = "high") -> BatchAugment:
    """Replace the random draws by the top (or bottom) of every range: a deterministic augmentation."""
    def uniform(n, low, high, ref):
        return torch.full((n,), high if at == "high" else low, device=ref.device, dtype=ref.dtype)

    aug._uniform = uniform
    return aug


@pytest.mark.parametrize("device", DEVICES)
def test_shape_dtype_range_and_device_kept(device: str) -> None:
    torch.manual_seed(0)
    x = torch.rand(16, 1, 28, 28, device=device)
    for aug in (BatchAugment(), BatchAugment(fill_mode="constant"), BatchAugment(fill_mode="nearest"),
                BatchAugment(random_erasing=1.0, hflip=True), BatchAugment(contrast=0.9)):
        y = aug(x)
        assert y.shape == x.shape and y.dtype == x.dtype and y.device.type == device
        assert y.min().item() >= 0.0 and y.max().item() <= 1.0
        assert not torch.equal(y, x)


@pytest.mark.parametrize("device", DEVICES)
def test_three_channel_batches(device: str) -> None:
    x = torch.rand(4, 3, 32, 32, device=device)
    assert BatchAugment()(x).shape == (4, 3, 32, 32)


@pytest.mark.parametrize("device", DEVICES)
def test_parameters_are_drawn_per_sample(device: str) -> None:
    torch.manual_seed(1)
    x = bar_image(8).to(device)  # eight identical images
    y = BatchAugment()(x)
    for i in range(1, 8):
        assert not torch.allclose(y[0], y[i]), f"sample {i} got the same augmentation as sample 0"


@pytest.mark.parametrize("kind", ["rotation", "zoom", "contrast"])
def test_each_transform_alone_is_per_sample(kind: str) -> None:
    torch.manual_seed(2)
    strengths = {"rotation": 0.0, "zoom": 0.0, "contrast": 0.0, kind: {"rotation": 0.05, "zoom": 0.1, "contrast": 0.2}[kind]}
    x = ell_image().repeat(4, 1, 1, 1) * 0.5 + 0.25
    y = BatchAugment(**strengths)(x)
    assert not torch.allclose(y[0], y[1]) and not torch.allclose(y[2], y[3])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("h", "w"), [(28, 28), (32, 32), (28, 32)])
def test_fast_grid_equals_affine_grid(device: str, h: int, w: int) -> None:
    """The broadcast grid is F.affine_grid(align_corners=False) for rotation/scale/flip matrices."""
    torch.manual_seed(4)
    n = 16
    angle, scale = torch.rand(n) * 2 * math.pi, torch.rand(n) * 0.4 + 0.8
    flip = torch.where(torch.rand(n) < 0.5, -1.0, 1.0)
    a, b, c, d = torch.cos(angle) * scale * flip, -torch.sin(angle) * scale, torch.sin(angle) * scale * flip, torch.cos(angle) * scale
    theta = torch.stack([torch.stack([a, b, torch.zeros(n)], 1), torch.stack([c, d, torch.zeros(n)], 1)], 1).to(device)
    expected = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    got = _affine_grid(theta[:, :, 0], theta[:, :, 1], h, w)
    assert got.shape == expected.shape == (n, h, w, 2)
    assert torch.allclose(got, expected, atol=1e-6)


def test_identity_at_zero_strength() -> None:
    x = torch.rand(5, 1, 28, 28)
    assert torch.equal(BatchAugment(rotation=0, zoom=0, contrast=0)(x), x)


def test_identity_through_the_warp() -> None:
    """Zero angle and unit scale through affine_grid/grid_sample reproduce the image (pixel centres map exactly)."""
    x = torch.rand(3, 1, 28, 28)
    aug = fixed_draws(BatchAugment(rotation=0.05, zoom=0.1, contrast=0.0))
    aug.rotation, aug.zoom = 1e-12, 1e-12  # forces the warp path with (numerically) identity parameters
    assert torch.allclose(aug(x), x, atol=1e-5)


def test_rotation_by_a_quarter_turn() -> None:
    """Rotation factor 0.25 at the top of its range is 90 degrees: an L maps onto torch.rot90 of itself."""
    x = ell_image()
    y = fixed_draws(BatchAugment(rotation=0.25, zoom=0.0, contrast=0.0))(x)
    errors = {k: (y - torch.rot90(x, k, dims=(2, 3))).abs().max().item() for k in (1, 2, 3)}
    assert min(errors.values()) < 1e-4, errors
    assert sorted(errors.values())[1] > 0.5  # exactly one quarter-turn direction matches
    horizontal = fixed_draws(BatchAugment(rotation=0.25, zoom=0.0, contrast=0.0))(bar_image())
    assert torch.allclose(horizontal, bar_image().transpose(2, 3), atol=1e-4)  # the bar turns vertical


def test_rotation_stays_within_18_degrees() -> None:
    """Default factor 0.05 is +-18 degrees (Keras RandomRotation(0.05))."""
    angles = []
    aug = BatchAugment(rotation=0.05, zoom=0.0, contrast=0.0)
    original = aug._uniform

    def spy(n, low, high, ref):
        draw = original(n, low, high, ref)
        angles.append(draw * 2 * math.pi)
        return draw

    aug._uniform = spy
    torch.manual_seed(3)
    aug(torch.rand(256, 1, 28, 28))
    degrees = torch.rad2deg(angles[0])
    assert degrees.abs().max() <= 18.0 + 1e-4 and degrees.abs().max() > 15.0 and degrees.min() < 0 < degrees.max()


def test_zoom_out_shrinks_and_zoom_in_grows() -> None:
    x = bar_image()
    lit = (x > 0.5).sum().item()
    out = fixed_draws(BatchAugment(rotation=0.0, zoom=0.25, contrast=0.0, fill_mode="constant"), "high")(x)
    into = fixed_draws(BatchAugment(rotation=0.0, zoom=0.25, contrast=0.0, fill_mode="constant"), "low")(x)
    assert (out > 0.5).sum().item() < lit < (into > 0.5).sum().item()


def _centre_of_mass(x: torch.Tensor) -> torch.Tensor:
    """[n, 2] (row, col) centre of mass of [n, 1, h, w] images."""
    rows = torch.arange(x.shape[-2], dtype=x.dtype).view(1, -1, 1)
    cols = torch.arange(x.shape[-1], dtype=x.dtype).view(1, 1, -1)
    mass = x[:, 0].sum(dim=(1, 2))
    return torch.stack([(x[:, 0] * rows).sum(dim=(1, 2)) / mass, (x[:, 0] * cols).sum(dim=(1, 2)) / mass], 1)


def test_translation_shifts_each_image_within_range_and_keeps_its_shape() -> None:
    torch.manual_seed(0)
    x = bar_image(256)
    out = BatchAugment(rotation=0.0, zoom=0.0, contrast=0.0, fill_mode="constant", translate=0.1)(x)
    shift = _centre_of_mass(out) - _centre_of_mass(x)
    assert shift.abs().max() <= 0.1 * 28 + 0.05  # at most 10% of the side
    assert shift.abs().max() > 2.0 and shift[:, 0].std() > 0.8 and shift[:, 1].std() > 0.8  # per sample, both axes
    assert torch.allclose(out.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)), rtol=0.02)  # moved, not cut or stretched
    same = BatchAugment(rotation=0.0, zoom=0.0, contrast=0.0, translate=0.0)(x)
    assert torch.equal(same, x)


def test_contrast_scales_deviation_from_each_images_mean() -> None:
    x = torch.rand(2, 1, 28, 28) * 0.5 + 0.25  # no clipping at 1.2x
    y = fixed_draws(BatchAugment(rotation=0.0, zoom=0.0, contrast=0.2))(x)
    mean = x.mean(dim=(2, 3), keepdim=True)
    assert torch.allclose(y, (x - mean) * 1.2 + mean, atol=1e-6)


def test_random_erasing_probability_zero_and_one() -> None:
    x = torch.full((32, 1, 28, 28), 0.5)
    plain = BatchAugment(rotation=0, zoom=0, contrast=0, random_erasing=0.0)
    assert torch.equal(plain(x), x)
    erased = BatchAugment(rotation=0, zoom=0, contrast=0, random_erasing=1.0)(x)
    changed = (erased != x).flatten(1).sum(1)
    assert (changed > 0).all()  # every image has a rectangle of noise
    assert (changed <= 0.4 * 28 * 28 + 28).all()  # at most ~40% of the area


def test_bad_fill_mode() -> None:
    with pytest.raises(ValueError, match="fill_mode must be one of"):
        BatchAugment(fill_mode="wrap")


# -- applied in training only ----------------------------------------------------------------------
@pytest.fixture
def augmenting_dm(synthetic_data_dir: str) -> ImageDataModule:
    dm = ImageDataModule(data_dir=synthetic_data_dir, augment=AugmentSettings(enabled=True), batch_size=16)
    dm.setup("fit")
    return dm


def test_augmentation_only_while_training(augmenting_dm: ImageDataModule) -> None:
    images, labels = next(iter(augmenting_dm.train_dataloader()))
    plain = to_unit_float(images)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    augmenting_dm.trainer = trainer
    trainer.training = False
    trainer.validating = True
    x, y = augmenting_dm.on_after_batch_transfer((images, labels), 0)
    assert torch.equal(x, plain) and torch.equal(y, labels)
    trainer.training = True
    x, y = augmenting_dm.on_after_batch_transfer((images, labels), 0)
    assert x.shape == plain.shape and not torch.equal(x, plain) and torch.equal(y, labels)


def test_no_trainer_means_no_augmentation(augmenting_dm: ImageDataModule) -> None:
    """Outside a Trainer (e.g. evaluation scripts calling the hook directly) images are left as they are."""
    images, labels = next(iter(augmenting_dm.val_dataloader()))
    assert augmenting_dm.trainer is None
    x, _ = augmenting_dm.on_after_batch_transfer((images, labels), 0)
    assert torch.equal(x, to_unit_float(images))


def test_augment_off_never_augments(synthetic_data_dir: str) -> None:
    dm = ImageDataModule(data_dir=synthetic_data_dir, augment=AugmentSettings(enabled=False), batch_size=16)
    dm.setup("fit")
    dm.trainer = SimpleNamespace(training=True)
    images, labels = next(iter(dm.train_dataloader()))
    assert torch.equal(dm.on_after_batch_transfer((images, labels), 0)[0], to_unit_float(images))


def test_augmentation_settings_are_one_group_and_old_spellings_name_the_new_key() -> None:
    from fmnist.data.augment import old_augment_keys, refuse_old_augment_keys, settings_from_hparams
    from fmnist.errors import FmnistError

    assert AugmentSettings.of({"enabled": True, "rotation": 0.1}) == AugmentSettings(enabled=True, rotation=0.1)
    assert AugmentSettings().build() is None and isinstance(AugmentSettings(enabled=True).build(), BatchAugment)
    assert old_augment_keys({"augment": True, "rotation": 0.1, "augment_share": 0.5}) == [
        ("data.augment", "data.augment.enabled"), ("data.rotation", "data.augment.rotation"),
        ("data.augment_share", "data.augment.share")]
    with pytest.raises(FmnistError, match=r"^data.zoom is now data.augment.zoom: augmentation settings are one "
                                          r"group, data.augment.\*; rename it in x.yaml.$"):
        refuse_old_augment_keys({"zoom": 0.2, "augment": {"enabled": True}}, "x.yaml")
    with pytest.raises(FmnistError, match=r"^data.augment is now data.augment.enabled \(and 2 more: data.rotation, "
                                          r"data.augment_share\): augmentation settings"):
        refuse_old_augment_keys({"augment": True, "rotation": 0.1, "augment_share": 0.5}, "x.yaml")
    with pytest.raises(FmnistError, match=r"^data.augment is now data.augment.enabled \(and 1 more: data.zoom\): "):
        refuse_old_augment_keys({"augment": False, "zoom": 0.1}, "x.yaml")
    refuse_old_augment_keys({"augment": {"enabled": True, "zoom": 0.1}}, "x.yaml")  # today's spelling: no error
    with pytest.raises(FmnistError, match="data.augment has no setting 'rotate'; the settings are enabled, rotation"):
        AugmentSettings.of({"rotate": 0.1})
    # A run saved before the grouping (flat hyperparameters) reads back as the same settings.
    assert settings_from_hparams({"augment": True, "hflip": True, "augment_share": 0.5}) == \
        AugmentSettings(enabled=True, hflip=True, share=0.5)
    assert settings_from_hparams({"augment": {"enabled": False}}) == AugmentSettings()


def test_the_defaults_are_the_studies_keras_layers() -> None:
    """Study B's pipeline: RandomRotation(0.05) (a fraction of a turn: +-18 degrees), RandomZoom(0.1),
    RandomContrast(0.2), fill mode reflect; nothing of our own recipe switched on."""
    aug = BatchAugment()
    assert (aug.rotation, aug.zoom, aug.contrast, aug.fill_mode) == (0.05, 0.1, 0.2, "reflect")
    assert (aug.random_erasing, aug.hflip, aug.translate, aug.share) == (0.0, False, 0.0, 1.0)
    assert repr(aug) == ("BatchAugment(rotation=0.05, zoom=0.1, contrast=0.2, fill_mode=reflect, random_erasing=0.0, "
                         "hflip=False, translate=0.0)")  # the photo options appear only when one is set
    assert repr(BatchAugment(share=0.5)).endswith("noise=0.0, share=0.5)")


def test_share_one_augments_every_image_with_the_same_draws_as_without_share() -> None:
    """share = 1 takes no extra random draw: the augmentation is draw for draw the plain one."""
    x = ell_image().repeat(6, 1, 1, 1)
    aug = BatchAugment(share=1.0)
    torch.manual_seed(5)
    with_share = aug(x)
    torch.manual_seed(5)
    assert torch.equal(with_share, aug._augment(x))


def test_horizontal_flips_are_drawn_half_and_half() -> None:
    """hflip alone: each image comes out as itself or its mirror; of 400, both kinds, near half each."""
    x = ell_image().repeat(400, 1, 1, 1)
    torch.manual_seed(6)
    y = BatchAugment(rotation=0.0, zoom=0.0, contrast=0.0, hflip=True)(x)
    same = torch.isclose(y, x, atol=1e-5).flatten(1).all(dim=1)
    mirrored = torch.isclose(y, x.flip(-1), atol=1e-5).flatten(1).all(dim=1)
    assert bool((same | mirrored).all()) and not bool((same & mirrored).any())
    assert 150 < int(mirrored.sum()) < 250  # binomial(400, 0.5): 5 standard deviations either side


def _warp_by_hand(x: torch.Tensor, theta: list[list[float]]) -> torch.Tensor:
    """torch's own affine warp of ``x`` by one 2 x 3 matrix (reflect fill off: zeros)."""
    matrix = torch.tensor(theta, dtype=x.dtype).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(matrix, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def test_rotation_and_zoom_together_are_the_affine_warp_worked_by_hand() -> None:
    """At the top of both ranges: angle 0.05 x 2 pi (18 degrees), scale 1 + 0.25; the sampling matrix is
    s [[cos a, -sin a], [sin a, cos a]] (F.affine_grid's convention, no translation)."""
    x = ell_image().repeat(2, 1, 1, 1)
    angle, scale = 0.05 * 2 * math.pi, 1.25
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    expected = _warp_by_hand(x, [[c, -s, 0.0], [s, c, 0.0]])
    got = fixed_draws(BatchAugment(rotation=0.05, zoom=0.25, contrast=0.0, fill_mode="constant"), "high")(x)
    assert torch.allclose(got, expected, atol=1e-5)


def test_aspect_stretches_width_and_height_by_e_to_the_half_range() -> None:
    """aspect 1.0, top of its range (+-aspect/2): log ratio 0.5, so x is sampled at e^-0.5 (the object widens by
    e^0.5) and y at e^0.5 (it gets shorter by as much)."""
    x = ell_image().repeat(2, 1, 1, 1)
    r = 0.5
    expected = _warp_by_hand(x, [[math.exp(-r), 0.0, 0.0], [0.0, math.exp(r), 0.0]])
    got = fixed_draws(BatchAugment(rotation=0.0, zoom=0.0, contrast=0.0, fill_mode="constant", aspect=1.0),
                      "high")(x)
    assert torch.allclose(got, expected, atol=1e-5)


def test_the_warp_of_a_wide_image_is_the_affine_warp_worked_by_hand() -> None:
    """Height and width are not mixed up on a 28 x 36 image (the grid is built from each side)."""
    x = torch.zeros(2, 1, 28, 36)
    x[:, :, 6:22, 10:14] = 1.0
    x[:, :, 18:22, 10:30] = 0.6
    angle, scale = 0.05 * 2 * math.pi, 1.25
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    got = fixed_draws(BatchAugment(rotation=0.05, zoom=0.25, contrast=0.0, fill_mode="constant"), "high")(x)
    assert torch.allclose(got, _warp_by_hand(x, [[c, -s, 0.0], [s, c, 0.0]]), atol=1e-5)


def test_contrast_at_the_bottom_of_its_range_scales_deviation_by_0_8() -> None:
    x = torch.rand(2, 1, 28, 28) * 0.5 + 0.25
    y = fixed_draws(BatchAugment(rotation=0.0, zoom=0.0, contrast=0.2), "low")(x)
    mean = x.mean(dim=(2, 3), keepdim=True)
    assert torch.allclose(y, (x - mean) * 0.8 + mean, atol=1e-6)


def test_noise_touches_only_the_object_with_the_drawn_standard_deviation() -> None:
    """noise 0.05 at the top of its range: object pixels (0.5) get N(0, 0.05^2) added, black stays black; at the
    bottom of the range (std 0) nothing changes."""
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 4:24, 4:24] = 0.5
    options = dict(rotation=0.0, zoom=0.0, contrast=0.0, noise=0.05)
    torch.manual_seed(8)
    y = fixed_draws(BatchAugment(**options), "high")(x)
    added = (y - x)[:, :, 4:24, 4:24]
    assert float(added.std()) == pytest.approx(0.05, rel=0.05) and abs(float(added.mean())) < 0.002
    assert torch.equal(y[x == 0], x[x == 0])
    assert torch.equal(fixed_draws(BatchAugment(**options), "low")(x), x)


@pytest.mark.parametrize(("blur", "channels"), [(0.6, 1), (1.0, 1), (2.0, 3)])
def test_blur_is_scipys_gaussian_filter_truncated_at_3_sigma(blur: float, channels: int) -> None:
    """At the top of its range sigma = blur; scipy.ndimage's Gaussian (truncate 3 sigma, zeros outside) is the
    reference, for every channel of every image."""
    x = torch.zeros(2, channels, 28, 28)
    x[:, :, 8:20, 11:17] = 1.0
    x[:, :, 4:6, 4:24] = 0.5
    got = fixed_draws(BatchAugment(rotation=0.0, zoom=0.0, contrast=0.0, blur=blur), "high")(x)
    reference = ndimage.gaussian_filter(x.double().numpy(), sigma=(0, 0, blur, blur), truncate=3.0, mode="constant")
    assert torch.allclose(got.double(), torch.from_numpy(reference), atol=1e-6)


def _erased(out: torch.Tensor, x: torch.Tensor) -> list[tuple[int, int]]:
    """(height, width) of the erased rectangle of each image (the pixels that changed)."""
    sizes = []
    for changed in (out != x).any(dim=1):
        rows, cols = changed.any(dim=1).nonzero().flatten(), changed.any(dim=0).nonzero().flatten()
        sizes.append((int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)))
    return sizes


def test_random_erasing_rectangles_at_the_ends_of_their_ranges() -> None:
    """Area 2-40% of the image, aspect (h / w) 0.3 to 1/0.3, rounded, at least one pixel a side, inside the image.
    Top of both ranges on 28 x 28: h = sqrt(0.4 * 784 / 0.3) -> 28 (clamped), w = sqrt(0.4 * 784 * 0.3) = 9.7 -> 10;
    bottom: h = sqrt(0.02 * 784 * 0.3) = 2.17 -> 2, w = sqrt(0.02 * 784 / 0.3) = 7.2 -> 7; on 8 x 8, bottom:
    h = sqrt(0.02 * 64 * 0.3) = 0.62 -> 1 (the one-pixel floor), w = 2.07 -> 2."""
    options = dict(rotation=0.0, zoom=0.0, contrast=0.0, random_erasing=1.0)
    torch.manual_seed(9)
    x = torch.full((200, 1, 28, 28), 2.0)  # outside the [0, 1) noise the rectangle is filled with
    high = fixed_draws(BatchAugment(**options), "high")(x)
    assert set(_erased(high, x)) == {(28, 10)}
    lefts = {int((image[0] != 2.0).any(dim=0).nonzero().min()) for image in high}
    assert lefts == set(range(19))  # every position from 0 to 28 - 10, each drawn
    assert set(_erased(fixed_draws(BatchAugment(**options), "low")(x), x)) == {(2, 7)}
    small = torch.full((50, 1, 8, 8), 2.0)
    assert set(_erased(fixed_draws(BatchAugment(**options), "low")(small), small)) == {(1, 2)}
