"""Reading and writing the IDX format of (Fashion-)MNIST, plain or gzip-compressed.

We read the raw files ourselves instead of going through ``torchvision.datasets`` so that
loading is one ``np.frombuffer`` per file (the full dataset in well under a second) and so
that a damaged file is reported by its path with what exactly is wrong: a bad magic number, a
header whose image size is not 28x28, a truncated body, trailing bytes, a label outside the class
range, or an images file and a labels file that disagree in count.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from fmnist.errors import IDXError

IMAGES_MAGIC = 2051  # unsigned byte, 3 dimensions
LABELS_MAGIC = 2049  # unsigned byte, 1 dimension
IMAGE_SHAPE = (28, 28)  # every dataset of this package: a header saying otherwise is refused
_UBYTE = 0x08


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise IDXError(f"{path}: cannot be read ({exc}); re-download or re-install the file.") from exc


def read_idx(path: str | Path, expected_magic: int | None = None) -> np.ndarray:
    """Return the array stored in an IDX file, validating header and size."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise IDXError(f"{path}: file is truncated ({len(raw)} bytes, no IDX header).")
    magic = struct.unpack(">I", raw[:4])[0]
    if expected_magic is not None and magic != expected_magic:
        raise IDXError(f"{path}: expected magic {expected_magic}, found {magic}.")
    zero, dtype_code, ndim = raw[0:2], raw[2], raw[3]
    if zero != b"\x00\x00" or dtype_code != _UBYTE or ndim == 0:
        raise IDXError(f"{path}: not an unsigned-byte IDX file (magic {magic}).")
    header_end = 4 + 4 * ndim
    if len(raw) < header_end:
        raise IDXError(f"{path}: file is truncated inside its header.")
    shape = struct.unpack(f">{ndim}I", raw[4:header_end])
    expected = int(np.prod(shape, dtype=np.int64))
    actual = len(raw) - header_end
    if actual < expected:
        raise IDXError(f"{path}: file is truncated: header promises {expected} bytes of data for shape "
                       f"{tuple(shape)}, found {actual}.")
    if actual > expected:
        raise IDXError(f"{path}: {actual - expected} unexpected trailing bytes after data of shape {tuple(shape)}.")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_end).reshape(shape)


def read_images(path: str | Path, image_shape: tuple[int, int] | None = IMAGE_SHAPE) -> np.ndarray:
    """Images as ``uint8 [N, H, W]``, the header's ``H x W`` checked against ``image_shape`` (None: any).

    The byte count alone cannot catch a wrong header: 56x14 images hold as many bytes as 28x28
    ones, and would otherwise load and train on scrambled pixels without a word.
    """
    images = read_idx(path, IMAGES_MAGIC)
    if image_shape is not None and tuple(images.shape[1:]) != tuple(image_shape):
        height, width = images.shape[1:]
        raise IDXError(f"{path}: header says the images are {height}x{width}, expected "
                       f"{image_shape[0]}x{image_shape[1]}; the file is damaged or not this dataset's, "
                       f"re-download or re-install it.")
    return images


def read_labels(path: str | Path, num_classes: int = 10) -> np.ndarray:
    """Labels as ``uint8 [N]``, each checked to lie in ``[0, num_classes)``."""
    labels = read_idx(path, LABELS_MAGIC)
    if labels.size and int(labels.max()) >= num_classes:
        bad = int(np.argmax(labels >= num_classes))
        raise IDXError(f"{path}: label {int(labels[bad])} at index {bad} is outside 0..{num_classes - 1} "
                       f"({num_classes} classes); the file is damaged or not this dataset's.")
    return labels


def read_pair(images_path: str | Path, labels_path: str | Path, num_classes: int = 10,
              image_shape: tuple[int, int] | None = IMAGE_SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one split, checked to agree in count."""
    images, labels = read_images(images_path, image_shape), read_labels(labels_path, num_classes)
    if len(images) != len(labels):
        images_path, labels_path = Path(images_path), Path(labels_path)
        labels_name = labels_path.name if labels_path.parent == images_path.parent else labels_path
        raise IDXError(f"{images_path} holds {len(images)} images but {labels_name} holds "
                       f"{len(labels)} labels; the pair is inconsistent, re-download both files.")
    return images, labels


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write a uint8 array as IDX (gzip-compressed when the name ends in ``.gz``)."""
    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = (_UBYTE << 8) | array.ndim
    payload = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)
    return path
