"""The seeded Fashion-MNIST-C generator: determinism, severity ordering, exact transforms, files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import write_synthetic_dataset

from fmnist.data import corrupted_sets as fs
from fmnist.data import corruptions as fc
from fmnist.data.sources import load_dataset
from fmnist.errors import FmnistError

NAMES = list(fc.CORRUPTIONS)
EXPECTED_NAMES = ["shot_noise", "impulse_noise", "glass_blur", "motion_blur", "shear", "scale", "rotate",
                  "brightness", "contrast", "saturate", "inverse", "flip_lr", "flip_ud", "turn",
                  "gaussian_noise", "gaussian_blur"]


def _images() -> np.ndarray:
    """16 garment-like blobs (ellipse + rectangle, textured) and 5 structured images, uint8 [21, 28, 28]."""
    rng = np.random.default_rng(1234)
    yy, xx = np.mgrid[:28, :28]
    blobs = []
    for _ in range(16):
        cy, cx = rng.uniform(9, 19, size=2)
        ry, rx = rng.uniform(4, 11, size=2)
        top, left = rng.integers(3, 12, size=2)
        height, width = rng.integers(6, 14, size=2)
        mask = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1) | (
            (yy >= top) & (yy < top + height) & (xx >= left) & (xx < left + width))
        blobs.append(mask * (rng.uniform(90, 230) + rng.normal(0, 20, size=(28, 28))))
    shirt = np.zeros((28, 28))
    shirt[4:9, 3:25], shirt[4:26, 9:19] = 200, 200
    trousers = np.zeros((28, 28))
    trousers[2:27, 7:13], trousers[2:27, 15:21], trousers[2:7, 7:21] = 150, 150, 150
    checker = ((yy // 4 + xx // 4) % 2) * 255.0
    gradient = np.broadcast_to(np.linspace(0, 255, 28), (28, 28))
    black = np.zeros((28, 28))
    stack = np.stack(blobs + [shirt, trousers, checker, gradient, black])
    return np.clip(np.rint(stack), 0, 255).astype(np.uint8)


IMAGES = _images()
LABELS = np.arange(len(IMAGES), dtype=np.uint8) % 10


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# -- registry and argument checks ------------------------------------------------------------------
def test_registry_names_and_flags():
    assert NAMES == EXPECTED_NAMES
    assert fc.STOCHASTIC.issubset(NAMES) and fc.SEVERITY_INDEPENDENT.issubset(NAMES)
    assert not fc.STOCHASTIC & fc.SEVERITY_INDEPENDENT


@pytest.mark.parametrize("severity", [0, 6, -1, 2.0, True, "high", None])
def test_bad_severity_is_one_clear_error(severity):
    with pytest.raises(FmnistError, match="Severity must be an integer from 1 to 5 or 'random'"):
        fc.corrupt(IMAGES, "rotate", severity, 0)


@pytest.mark.parametrize("images", [IMAGES.astype(np.float32), IMAGES[0], IMAGES[:, :27, :27]])
def test_bad_images_are_one_clear_error(images):
    with pytest.raises(FmnistError, match=r"uint8 array of shape \[N, 28, 28\]"):
        fc.corrupt(images, "rotate", 1, 0)


def test_unknown_name_and_bad_seed_are_clear_errors():
    with pytest.raises(FmnistError, match="Unknown corruption 'fog'; use one of: shot_noise, impulse_noise"):
        fc.corrupt(IMAGES, "fog", 1, 0)
    with pytest.raises(FmnistError, match="Unknown corruption 'fog'"):
        fc.generate(IMAGES, names=["rotate", "fog"])
    with pytest.raises(FmnistError, match="Seed must be a non-negative integer"):
        fc.corrupt(IMAGES, "rotate", 1, -3)


# -- every corruption ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_and_change(name):
    for severity in [*fc.SEVERITIES, "random"]:
        out = fc.corrupt(IMAGES, name, severity, 0)
        assert out.shape == IMAGES.shape and out.dtype == np.uint8
        assert out.flags.c_contiguous
        assert not np.array_equal(out, IMAGES), f"{name} at severity {severity} left the images unchanged"
    assert fc.corrupt(IMAGES[:0], name, 3, 0).shape == (0, 28, 28)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_per_seed(name):
    first = fc.corrupt(IMAGES, name, 3, 7)
    np.testing.assert_array_equal(first, fc.corrupt(IMAGES.copy(), name, 3, 7))
    other = fc.corrupt(IMAGES, name, 3, 8)
    if name in fc.STOCHASTIC:
        assert not np.array_equal(first, other), f"{name} ignores the seed"
    else:
        np.testing.assert_array_equal(first, other)


@pytest.mark.parametrize("name", NAMES)
def test_random_severity_is_per_image_and_seeded(name):
    """With a random severity each image gets one of the five fixed-severity results (non-stochastic ones)."""
    mixed = fc.corrupt(IMAGES, name, "random", 11)
    np.testing.assert_array_equal(mixed, fc.corrupt(IMAGES, name, "random", 11))
    if name in fc.SEVERITY_INDEPENDENT:
        np.testing.assert_array_equal(mixed, fc.corrupt(IMAGES, name, 1, 11))
        return
    assert not np.array_equal(mixed, fc.corrupt(IMAGES, name, "random", 12))
    if name not in fc.STOCHASTIC:
        fixed = np.stack([fc.corrupt(IMAGES, name, s, 0) for s in fc.SEVERITIES])  # [5, N, 28, 28]
        matches = (fixed == mixed[None]).all(axis=(2, 3))  # [5, N]
        assert matches.any(axis=0).all()
        used = {int(np.argmax(column)) for column in matches.T if column.sum() == 1}
        assert len(used) >= 3, f"{name}: random severities should cover several levels, got {used}"


@pytest.mark.parametrize("name", NAMES)
def test_higher_severity_changes_more(name):
    diffs = [_mad(fc.corrupt(IMAGES, name, s, 0), IMAGES) for s in fc.SEVERITIES]
    assert (np.diff(diffs) >= 0).all(), f"{name}: mean |corrupted - clean| by severity {diffs}"
    if name not in fc.SEVERITY_INDEPENDENT:
        assert diffs[-1] > diffs[0], f"{name}: {diffs}"


def test_each_corruption_has_its_own_stream():
    """Adding or reordering corruptions never changes another one's output."""
    alone = fc.generate(IMAGES, seed=3, severity="random", names=["rotate"])["rotate"]
    together = fc.generate(IMAGES, seed=3, severity="random", names=["shear", "motion_blur", "rotate"])
    np.testing.assert_array_equal(alone, together["rotate"])
    np.testing.assert_array_equal(alone, fc.corrupt(IMAGES, "rotate", "random", 3))
    assert list(fc.generate(IMAGES[:2], seed=0)) == NAMES


# -- exact transforms ------------------------------------------------------------------------------
@pytest.mark.parametrize("severity", [1, 5, "random"])
def test_exact_transforms(severity):
    np.testing.assert_array_equal(fc.corrupt(IMAGES, "inverse", severity, 0), 255 - IMAGES)
    np.testing.assert_array_equal(fc.corrupt(IMAGES, "flip_lr", severity, 0), IMAGES[:, :, ::-1])
    np.testing.assert_array_equal(fc.corrupt(IMAGES, "flip_ud", severity, 0), IMAGES[:, ::-1, :])
    np.testing.assert_array_equal(fc.corrupt(IMAGES, "turn", severity, 0), np.rot90(IMAGES, 1, axes=(1, 2)))


def test_value_corruptions_follow_their_formulas():
    x = IMAGES.astype(np.float64) / 255
    np.testing.assert_allclose(fc.corrupt(IMAGES, "brightness", 2, 0), np.rint(np.clip(x + 0.2, 0, 1) * 255), atol=1)
    means = x.mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(fc.corrupt(IMAGES, "contrast", 1, 0), np.rint((x - means) * 0.4 * 255 + means * 255),
                               atol=1)
    np.testing.assert_allclose(fc.corrupt(IMAGES, "saturate", 5, 0), np.rint(np.clip(20 * x + 0.2, 0, 1) * 255), atol=1)
    assert fc.corrupt(IMAGES, "scale", 5, 0)[-1].max() == 0  # black stays black


def test_impulse_noise_only_sets_pixels_to_black_or_white():
    out = fc.corrupt(IMAGES, "impulse_noise", 5, 0)
    changed = out != IMAGES
    assert set(np.unique(out[changed])) <= {0, 255}
    assert 0.1 < (out != IMAGES).mean() < 0.3  # 27 % hit, some already black or white


# -- files -----------------------------------------------------------------------------------------
def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_write_read_round_trip_and_reuse(tmp_path):
    folder = fs.write_corrupted(tmp_path / "c", IMAGES, LABELS, seed=5)
    assert folder == tmp_path / "c"
    manifest = json.loads((folder / fs.MANIFEST_NAME).read_text())
    assert manifest["seed"] == 5 and manifest["severity"] == "random" and manifest["names"] == NAMES
    assert manifest["source"]["count"] == len(IMAGES) and len(manifest["source"]["images_sha256"]) == 64
    assert set(manifest["files"]) == set(NAMES)
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    expected = fc.generate(IMAGES, seed=5)
    for name in NAMES:
        images, labels = fs.read_corrupted(folder, name)
        np.testing.assert_array_equal(images, expected[name])
        np.testing.assert_array_equal(labels, LABELS)

    before = _mtimes(folder)
    assert fs.write_corrupted(folder, IMAGES, LABELS, seed=5) == folder
    assert _mtimes(folder) == before


def test_regenerates_on_other_seed_severity_or_damage(tmp_path):
    folder = fs.write_corrupted(tmp_path, IMAGES, LABELS, seed=5, severity=2)
    old_rotate = fs.read_corrupted(folder, "rotate")[0]

    fs.write_corrupted(folder, IMAGES, LABELS, seed=6, severity=2)
    assert json.loads((folder / fs.MANIFEST_NAME).read_text())["seed"] == 6
    new_rotate = fs.read_corrupted(folder, "rotate")[0]
    assert not np.array_equal(new_rotate, old_rotate)
    np.testing.assert_array_equal(new_rotate, fc.corrupt(IMAGES, "rotate", 2, 6))

    fs.write_corrupted(folder, IMAGES, LABELS, seed=6, severity=4)
    np.testing.assert_array_equal(fs.read_corrupted(folder, "scale")[0], fc.corrupt(IMAGES, "scale", 4, 0))

    (folder / "scale.npz").write_bytes(b"damaged")
    fs.write_corrupted(folder, IMAGES, LABELS, seed=6, severity=4)
    np.testing.assert_array_equal(fs.read_corrupted(folder, "scale")[0], fc.corrupt(IMAGES, "scale", 4, 0))

    other_labels = (LABELS + 1) % 10
    fs.write_corrupted(folder, IMAGES, other_labels, seed=6, severity=4)
    np.testing.assert_array_equal(fs.read_corrupted(folder, "scale")[1], other_labels)


def test_labels_must_match_images(tmp_path):
    with pytest.raises(FmnistError, match="one label per image"):
        fs.write_corrupted(tmp_path, IMAGES, LABELS[:-1])
    assert not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    return fs.write_corrupted(tmp_path_factory.mktemp("corrupted"), IMAGES[:4], LABELS[:4], seed=1)


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for path in src.iterdir():
        (dst / path.name).write_bytes(path.read_bytes())
    return dst


def _set_sha(folder: Path, name: str) -> None:
    """Make the manifest vouch for whatever ``name``'s file now holds, to reach the loader's own checks."""
    manifest = json.loads((folder / fs.MANIFEST_NAME).read_text())
    manifest["files"][name]["sha256"] = fs._file_sha256(folder / f"{name}.npz")
    (folder / fs.MANIFEST_NAME).write_text(json.dumps(manifest))


def test_read_errors_are_one_clear_sentence(written, tmp_path):
    with pytest.raises(FmnistError, match="Unknown corruption 'snow'; use one of: .*gaussian_blur"):
        fs.read_corrupted(written, "snow")
    with pytest.raises(FmnistError, match="manifest.json is missing.*write_corrupted"):
        fs.read_corrupted(tmp_path, "rotate")

    folder = _copy(written, tmp_path / "missing")
    os.remove(folder / "rotate.npz")
    with pytest.raises(FmnistError, match=r"rotate\.npz: file is missing; rerun write_corrupted"):
        fs.read_corrupted(folder, "rotate")

    folder = _copy(written, tmp_path / "truncated")
    data = (folder / "rotate.npz").read_bytes()
    (folder / "rotate.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(FmnistError, match=r"rotate\.npz: contents do not match manifest\.json"):
        fs.read_corrupted(folder, "rotate")
    _set_sha(folder, "rotate")
    with pytest.raises(FmnistError, match=r"rotate\.npz: not a readable corrupted split") as info:
        fs.read_corrupted(folder, "rotate")
    assert str(info.value).count("; ") == 1 and str(info.value).endswith(".")

    folder = _copy(written, tmp_path / "pickled")
    with (folder / "rotate.npz").open("wb") as handle:
        np.savez(handle, images=np.array([object()], dtype=object), labels=LABELS[:1])
    _set_sha(folder, "rotate")
    with pytest.raises(FmnistError, match="not a readable corrupted split"):
        fs.read_corrupted(folder, "rotate")

    folder = _copy(written, tmp_path / "wrong_shape")
    with (folder / "rotate.npz").open("wb") as handle:
        np.savez(handle, images=np.zeros((2, 5, 5), np.uint8), labels=LABELS[:2])
    _set_sha(folder, "rotate")
    with pytest.raises(FmnistError, match=r"not uint8 \[N, 28, 28\] and \[N\]"):
        fs.read_corrupted(folder, "rotate")

    folder = _copy(written, tmp_path / "bad_manifest")
    (folder / fs.MANIFEST_NAME).write_text("{not json")
    with pytest.raises(FmnistError, match="unreadable manifest"):
        fs.read_corrupted(folder, "rotate")


def test_interrupted_write_leaves_no_partial_files(tmp_path, monkeypatch):
    folder = fs.write_corrupted(tmp_path, IMAGES, LABELS, seed=1)
    real_savez = np.savez_compressed

    def failing_savez(handle, **arrays):
        real_savez(handle, **arrays)
        handle.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", failing_savez)
    with pytest.raises(KeyboardInterrupt):
        fs.write_corrupted(folder, IMAGES, LABELS, seed=2)
    monkeypatch.undo()
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(FmnistError, match="manifest.json is missing"):  # never a manifest over mixed files
        fs.read_corrupted(folder, "shot_noise")
    fs.write_corrupted(folder, IMAGES, LABELS, seed=2)
    np.testing.assert_array_equal(fs.read_corrupted(folder, "rotate")[0], fc.corrupt(IMAGES, "rotate", "random", 2))


# -- the named corrupted set under a data root -------------------------------------------------------
def test_corrupted_dir_follows_the_writable_data_roots(tmp_path, monkeypatch):
    assert fs.corrupted_dir("fashion-c", tmp_path, seed=3, severity=2) == tmp_path / "FashionMNIST-C" / "seed3-2"
    monkeypatch.setenv("FMNIST_DATA_DIR", str(tmp_path / "env"))
    assert fs.corrupted_dir() == tmp_path / "env" / "FashionMNIST-C" / "seed0-random"
    monkeypatch.delenv("FMNIST_DATA_DIR")
    assert fs.corrupted_dir() == Path("data") / "FashionMNIST-C" / "seed0-random"
    with pytest.raises(FmnistError, match="Unknown corrupted test set 'mnist-c'; choose one of: fashion-c"):
        fs.corrupted_dir("mnist-c")
    with pytest.raises(FmnistError, match="Seed must be a non-negative integer"):
        fs.corrupted_dir(seed=-1)


def test_ensure_corrupted_generates_once_from_the_test_split(tmp_path):
    write_synthetic_dataset(tmp_path, "fashion", n_train=20, n_test=30)
    folder = fs.ensure_corrupted("fashion-c", tmp_path, seed=4)
    assert folder == tmp_path / "FashionMNIST-C" / "seed4-random"
    before = _mtimes(folder)
    assert fs.ensure_corrupted("fashion-c", tmp_path, seed=4) == folder
    assert _mtimes(folder) == before  # reused, not regenerated
    test = load_dataset("fashion", tmp_path)
    split = fs.read_corrupted_split(folder, "rotate")
    np.testing.assert_array_equal(split.images, fc.corrupt(test.test_images.numpy(), "rotate", "random", 4))
    np.testing.assert_array_equal(split.labels, test.test_labels.numpy())
    assert split.name == "rotate" and split.severities.dtype == np.uint8
    assert set(np.unique(split.severities)) <= set(fc.SEVERITIES) and len(np.unique(split.severities)) >= 3


def test_split_severities_are_the_ones_each_image_got(written):
    split = fs.read_corrupted_split(written, "scale")
    for image, original, severity in zip(split.images, IMAGES[:4], split.severities, strict=True):
        np.testing.assert_array_equal(image, fc.corrupt(original[None], "scale", int(severity), 0)[0])
