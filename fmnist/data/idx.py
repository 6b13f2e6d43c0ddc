"""Reading and writing the IDX format of (Fashion-)MNIST, plain or gzip-compressed.

We read the raw files ourselves instead of going through ``torchvision.datasets`` so that
loading is one ``np.frombuffer`` per file (the full dataset in well under a second) and so
that a damaged file is reported by name with what exactly is wrong.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from fmnist.errors import IDXError

IMAGES_MAGIC = 2051  # unsigned byte, 3 dimensions
LABELS_MAGIC = 2049  # unsigned byte, 1 dimension
_UBYTE = 0x08


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise IDXError(f"{path.name}: cannot be read ({exc}); re-download or re-install the file.") from exc


def read_idx(path: str | Path, expected_magic: int | None = None) -> np.ndarray:
    """Return the array stored in an IDX file, validating header and size."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise IDXError(f"{path.name}: file is truncated ({len(raw)} bytes, no IDX header).")
    magic = struct.unpack(">I", raw[:4])[0]
    if expected_magic is not None and magic != expected_magic:
        raise IDXError(f"{path.name}: expected magic {expected_magic}, found {magic}.")
    zero, dtype_code, ndim = raw[0:2], raw[2], raw[3]
    if zero != b"\x00\x00" or dtype_code != _UBYTE or ndim == 0:
        raise IDXError(f"{path.name}: not an unsigned-byte IDX file (magic {magic}).")
    header_end = 4 + 4 * ndim
    if len(raw) < header_end:
        raise IDXError(f"{path.name}: file is truncated inside its header.")
    shape = struct.unpack(f">{ndim}I", raw[4:header_end])
    expected = int(np.prod(shape, dtype=np.int64))
    actual = len(raw) - header_end
    if actual < expected:
        raise IDXError(f"{path.name}: file is truncated: header promises {expected} bytes of data for shape "
                       f"{tuple(shape)}, found {actual}.")
    if actual > expected:
        raise IDXError(f"{path.name}: {actual - expected} unexpected trailing bytes after data of shape {tuple(shape)}.")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_end).reshape(shape)


def read_images(path: str | Path) -> np.ndarray:
    """Images as ``uint8 [N, H, W]``."""
    return read_idx(path, IMAGES_MAGIC)


def read_labels(path: str | Path, num_classes: int = 10) -> np.ndarray:
    """Labels as ``uint8 [N]``, each checked to lie in ``[0, num_classes)``."""
    labels = read_idx(path, LABELS_MAGIC)
    if labels.size and int(labels.max()) >= num_classes:
        bad = int(np.argmax(labels >= num_classes))
        raise IDXError(f"{Path(path).name}: label {int(labels[bad])} at index {bad} is outside 0..{num_classes - 1}.")
    return labels


def read_pair(images_path: str | Path, labels_path: str | Path, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one split, checked to agree in count."""
    images, labels = read_images(images_path), read_labels(labels_path, num_classes)
    if len(images) != len(labels):
        raise IDXError(f"{Path(images_path).name} holds {len(images)} images but {Path(labels_path).name} holds "
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
