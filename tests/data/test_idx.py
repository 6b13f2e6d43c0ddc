"""IDX reading/writing: round trips, and every kind of damage named by file and problem."""

from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from fmnist.data.idx import (
    read_idx,
    read_images,
    read_labels,
    read_pair,
    write_idx,
)
from fmnist.errors import FmnistError, IDXError


def images_and_labels(n: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), rng.integers(0, 10, size=n).astype(np.uint8)


# The IDX format (LeCun's MNIST page): a magic number of two zero bytes, a type byte (0x08: unsigned byte) and the
# number of dimensions, then one big-endian uint32 per dimension. Written out here, not imported from the module.
IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions (N, rows, cols)
LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension (N)


def header(magic: int, *shape: int) -> bytes:
    return struct.pack(f">I{len(shape)}I", magic, *shape)


# -- round trips -----------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    images, labels = images_and_labels()
    images_path = write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images)
    labels_path = write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels)
    got_images, got_labels = read_pair(images_path, labels_path)
    assert got_images.dtype == np.uint8 and got_images.shape == (12, 28, 28)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_gz_is_really_compressed_and_plain_is_the_documented_layout(tmp_path: Path) -> None:
    images, _ = images_and_labels(3)
    plain = write_idx(tmp_path / "x-idx3-ubyte", images).read_bytes()
    assert plain[:16] == header(IMAGES_MAGIC, 3, 28, 28)  # magic 0x00000803, then big-endian dims
    assert plain[16:] == images.tobytes()
    assert gzip.decompress((write_idx(tmp_path / "x-idx3-ubyte.gz", images)).read_bytes()) == plain


def test_written_headers_are_the_formats_bytes(tmp_path: Path) -> None:
    """Byte for byte what the format says, so torchvision and other readers take our files (and we theirs)."""
    images, labels = images_and_labels(2)
    assert write_idx(tmp_path / "i-idx3-ubyte", images).read_bytes()[:16] == bytes(
        [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28])
    assert write_idx(tmp_path / "l-idx1-ubyte", labels).read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 2, *labels])


def test_images_and_labels_files_are_not_interchangeable(tmp_path: Path) -> None:
    images, labels = images_and_labels(3)
    with pytest.raises(IDXError, match=r"expected magic 2049, found 2051"):
        read_labels(write_idx(tmp_path / "images-as-labels", images))
    with pytest.raises(IDXError, match=r"expected magic 2051, found 2049"):
        read_images(write_idx(tmp_path / "labels-as-images", labels))


def test_empty_arrays_round_trip(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "empty-images-idx3-ubyte", np.zeros((0, 28, 28), dtype=np.uint8))
    assert read_images(path).shape == (0, 28, 28)
    assert read_labels(write_idx(tmp_path / "empty-labels-idx1-ubyte", np.zeros(0, np.uint8))).shape == (0,)


def test_other_shapes_round_trip(tmp_path: Path) -> None:
    array = np.arange(2 * 3 * 4 * 5, dtype=np.uint8).reshape(2, 3, 4, 5)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "four-d", array)), array)


# -- corruption: each one is an IDXError naming the file and the problem ------------------------------
def test_bad_magic_names_file_expected_and_found(tmp_path: Path) -> None:
    images, _ = images_and_labels(2)
    path = write_idx(tmp_path / "t10k-labels-idx1-ubyte", images)  # an images file under a labels name
    with pytest.raises(IDXError, match=re.escape("t10k-labels-idx1-ubyte: expected magic 2049, found 2051")):
        read_labels(path)
    _, labels = images_and_labels(2)
    swapped = write_idx(tmp_path / "train-images-idx3-ubyte.gz", labels)
    with pytest.raises(IDXError, match=re.escape("train-images-idx3-ubyte.gz: expected magic 2051, found 2049")):
        read_images(swapped)


def test_idx_error_is_a_user_error() -> None:
    assert issubclass(IDXError, FmnistError) and issubclass(IDXError, ValueError)


def test_truncated_data(tmp_path: Path) -> None:
    images, _ = images_and_labels(4)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(header(IMAGES_MAGIC, 4, 28, 28) + images.tobytes()[:-100])
    with pytest.raises(IDXError, match=r"train-images-idx3-ubyte: file is truncated.*3136 bytes.*\(4, 28, 28\).*3036"):
        read_images(path)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_truncated_data_inside_gzip(tmp_path: Path, suffix: str) -> None:
    payload = header(LABELS_MAGIC, 10) + bytes(7)
    path = tmp_path / f"t10k-labels-idx1-ubyte{suffix}"
    path.write_bytes(gzip.compress(payload) if suffix else payload)
    with pytest.raises(IDXError, match=rf"t10k-labels-idx1-ubyte{re.escape(suffix)}: file is truncated"):
        read_labels(path)


def test_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(header(IMAGES_MAGIC, 60000, 28, 28)[:10])  # magic + 1.5 of 3 dimensions
    with pytest.raises(IDXError, match=r"train-images-idx3-ubyte: file is truncated inside its header"):
        read_images(path)


def test_shorter_than_magic(tmp_path: Path) -> None:
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(b"\x00\x00")
    with pytest.raises(IDXError, match=r"train-labels-idx1-ubyte: file is truncated \(2 bytes, no IDX header\)"):
        read_labels(path)


def test_trailing_bytes(tmp_path: Path) -> None:
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(header(LABELS_MAGIC, 3) + bytes(5))
    with pytest.raises(IDXError, match=r"train-labels-idx1-ubyte: 2 unexpected trailing bytes"):
        read_labels(path)


def test_not_unsigned_byte(tmp_path: Path) -> None:
    path = tmp_path / "floats-idx1"
    path.write_bytes(struct.pack(">II", 0x0D01, 1) + struct.pack(">f", 1.0))  # dtype 0x0D = float32
    with pytest.raises(IDXError, match=r"floats-idx1: not an unsigned-byte IDX file \(magic 3329\)"):
        read_idx(path)


def test_count_mismatch_between_images_and_labels(tmp_path: Path) -> None:
    images, labels = images_and_labels(5)
    images_path = write_idx(tmp_path / "t10k-images-idx3-ubyte", images)
    labels_path = write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels[:4])
    with pytest.raises(IDXError, match=r"t10k-images-idx3-ubyte holds 5 images but t10k-labels-idx1-ubyte holds 4 labels"):
        read_pair(images_path, labels_path)


def test_label_out_of_range(tmp_path: Path) -> None:
    labels = np.array([0, 9, 3, 10, 11], dtype=np.uint8)
    path = write_idx(tmp_path / "train-labels-idx1-ubyte", labels)
    with pytest.raises(IDXError, match=r"train-labels-idx1-ubyte: label 10 at index 3 is outside 0\.\.9"):
        read_labels(path)
    assert read_labels(path, num_classes=12).tolist() == labels.tolist()
    with pytest.raises(IDXError, match=r"label 9 at index 1 is outside 0\.\.2"):
        read_labels(path, num_classes=3)


def test_empty_gz(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(b"")
    with pytest.raises(IDXError, match=r"train-images-idx3-ubyte\.gz: file is truncated \(0 bytes"):
        read_images(path)


def test_garbage_gz(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(b"this is not gzip data at all")
    with pytest.raises(IDXError, match=r"train-images-idx3-ubyte\.gz: cannot be read .*re-download"):
        read_images(path)


def test_cut_gzip_stream(tmp_path: Path) -> None:
    images, _ = images_and_labels(3)
    full = gzip.compress(header(IMAGES_MAGIC, 3, 28, 28) + images.tobytes())
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(IDXError, match=r"t10k-images-idx3-ubyte\.gz: cannot be read"):
        read_images(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(IDXError, match=r"nowhere-idx3-ubyte: cannot be read"):
        read_images(tmp_path / "nowhere-idx3-ubyte")


# -- the edges of each check (each found by a surviving mutant: benchmarks/mutation.py) ------------------------
def test_magic_alone_is_a_header_cut_inside_its_dimensions(tmp_path: Path) -> None:
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(header(LABELS_MAGIC))  # 4 bytes: a magic that promises one dimension, and none follows
    with pytest.raises(IDXError, match=r"train-labels-idx1-ubyte: file is truncated inside its header"):
        read_labels(path)


def test_image_size_check_names_both_sizes_and_can_be_turned_off(tmp_path: Path) -> None:
    images = np.arange(2 * 56 * 14, dtype=np.uint8).reshape(2, 56, 14)
    path = write_idx(tmp_path / "t10k-images-idx3-ubyte", images)
    with pytest.raises(IDXError, match=r"header says the images are 56x14, expected 28x30;"):
        read_images(path, image_shape=(28, 30))
    np.testing.assert_array_equal(read_images(path, image_shape=None), images)  # None: any size
    labels = write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([1, 2], dtype=np.uint8))
    with pytest.raises(IDXError, match=r"header says the images are 56x14, expected 28x28;"):
        read_pair(path, labels)  # the pair checks the size by default ...
    assert read_pair(path, labels, image_shape=None)[0].shape == (2, 56, 14)  # ... and takes None too


def test_the_first_label_past_the_classes_is_refused(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 9, 10], dtype=np.uint8))
    with pytest.raises(IDXError, match=r"label 10 at index 2 is outside 0\.\.9 \(10 classes\)"):
        read_labels(path)
    images = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 28, 28), dtype=np.uint8))
    with pytest.raises(IDXError, match=r"label 10 at index 2 is outside 0\.\.9"):
        read_pair(images, path)  # ten classes by default here too
    assert read_labels(path, num_classes=11).tolist() == [0, 9, 10]


def test_writing_creates_missing_folders_and_overwrites(tmp_path: Path) -> None:
    images, _ = images_and_labels(2)
    path = write_idx(tmp_path / "new" / "raw" / "train-images-idx3-ubyte", images)
    np.testing.assert_array_equal(read_images(path), images)
    write_idx(path, images[:1])  # the folder exists now, and the file: both fine
    assert read_images(path).shape == (1, 28, 28)
