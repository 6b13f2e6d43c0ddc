"""Photo inputs: files, folders, ``file,label`` CSVs and http(s) URLs, read with size and time limits, decoded safely."""

from __future__ import annotations

import contextlib
import csv
import heapq
import io
import os
import re
import struct
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fmnist.data.classes import match_label
from fmnist.errors import FmnistError, human_bytes
from fmnist.photos.fetch import DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT, FetchError, fetch
from fmnist.photos.preprocess import Preprocessed, preprocess

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
DEFAULT_MAX_PIXELS = 64_000_000  # a 48 MP phone photo fits; PIL's own bomb limit is 89 MP
DEFAULT_MAX_IMAGES = 1000  # per folder, CSV or IIIF manifest: a typo'd path or a 10,000-canvas book stays bounded


class PhotoError(FmnistError):
    """One input could not be used; the message is the one line shown for that input."""


# ----------------------------------------------------------------------------- reading bytes


def is_url(text: str) -> bool:
    """``scheme://...`` (any scheme, so ``ftp://`` is reported as unsupported rather than as a missing file)."""
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text) is not None


def fetch_url(url: str, timeout: float = DEFAULT_TIMEOUT, max_bytes: int = DEFAULT_MAX_BYTES, *,
              allow_private: bool = False) -> bytes:
    """Download ``url`` with :func:`fmnist.photos.fetch.fetch` (public hosts only unless ``allow_private``).

    One deadline covers connecting, headers, body and redirects; the size cap is checked
    against ``Content-Length`` and again while streaming.
    """
    try:
        return fetch(url, timeout, max_bytes, allow_private=allow_private)
    except FetchError as exc:
        raise PhotoError(str(exc)) from None


def read_bytes(location: str | Path, timeout: float = DEFAULT_TIMEOUT, max_bytes: int = DEFAULT_MAX_BYTES, *,
               allow_private: bool = False) -> bytes:
    """Bytes of a local file or an http(s) URL, under the same size cap."""
    if isinstance(location, str) and is_url(location):
        return fetch_url(location, timeout, max_bytes, allow_private=allow_private)
    path = Path(location)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise PhotoError("no such file.") from None
    except OSError as exc:
        raise PhotoError(f"cannot read ({exc.strerror or exc}).") from None
    if not path.is_file():
        raise PhotoError("not a regular file.")
    if size > max_bytes:
        raise PhotoError(f"file is {human_bytes(size)}, over the {human_bytes(max_bytes)} size cap.")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise PhotoError(f"cannot read ({exc.strerror or exc}).") from None


# ----------------------------------------------------------------------------- decoding


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Validated, fully decoded, upright RGB image; transparent areas become white (a product-shot background).

    The pixel count is checked from the header before any pixel is decoded, and PIL's own
    ``DecompressionBombWarning`` is turned into an error for the same reason.
    """
    if not data:
        raise PhotoError("empty file.")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise PhotoError(f"image is {width}x{height} = {width * height:,} pixels, over the {max_pixels:,}-pixel "
                                 f"limit (decompression bomb guard).")
            if width < 1 or height < 1:
                raise PhotoError(f"image has no pixels ({width}x{height}).")
            image.load()
        except PhotoError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise PhotoError(f"refused as a decompression bomb ({exc}).") from None
        except UnidentifiedImageError:
            raise PhotoError("not an image (no JPEG/PNG/WebP/... header PIL recognises).") from None
        except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
            reason = str(exc) or type(exc).__name__
            kind = "truncated" if "truncated" in reason.lower() else "corrupt"
            raise PhotoError(f"{kind} image data ({reason}).") from None
    with contextlib.suppress(Exception):  # a broken EXIF block must not cost us the picture
        image = ImageOps.exif_transpose(image)
    image = to_8bit(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    try:
        if has_alpha:
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB")
        return image.convert("RGB")
    except ValueError as exc:
        raise PhotoError(f"pixels of mode {image.mode} cannot be read as a colour photo ({exc}); save it as an "
                         f"8-bit RGB or greyscale JPEG or PNG.") from None


def to_8bit(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float greyscale images as 8-bit greyscale, scaled by their white level.

    PIL's own ``convert`` clips them (65535 -> 255, but 200 of 65535 stays 200), so a 16-bit PNG became an
    almost black input. Integers up to 65535 are 16-bit (white = 65535; up to 255 they are 8-bit values in a
    wider type); floats in [0, 1] are fractions of white, up to 255 grey levels. Anything else has no known
    white level and is refused.
    """
    mode = image.mode
    if mode not in ("I", "F") and not mode.startswith("I;16"):
        return image
    values = np.asarray(image, dtype=np.float64)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if mode.startswith("I;16"):
        white = 65535.0
    elif low >= 0 and high <= 1.0 and mode == "F":
        white = 1.0
    elif low >= 0 and high <= 255:
        white = 255.0
    elif low >= 0 and high <= 65535 and mode == "I":
        white = 65535.0
    else:
        raise PhotoError(f"its {'float' if mode == 'F' else '32-bit integer'} pixels run from {low:g} to {high:g}, "
                         f"with no known white level; save it as an 8- or 16-bit image.")
    scaled = np.clip(np.rint(values * (255.0 / white)), 0, 255).astype(np.uint8)
    return Image.fromarray(scaled)  # uint8, two dimensions: mode L


# ----------------------------------------------------------------------------- labels and inputs

@dataclass
class PhotoSource:
    """One image to classify: where it is, a display name, and optionally its true label."""

    location: str  # file path or http(s) URL
    name: str
    label: int | None = None
    label_text: str | None = None  # the label as written (kept even when it is not a known class)
    region: tuple[float, float, float, float] | None = None  # x, y, w, h as fractions of the image
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.name = printable(self.name)  # shown and written: a file name's undecodable bytes must not crash that


@dataclass
class InputProblem:
    """An input that yielded no source (missing path, bad CSV row, ...): ``name: message``."""

    name: str
    message: str
    fatal: bool = True  # False: a warning (e.g. an unknown label), the input is still predicted

    def __post_init__(self) -> None:
        self.name = printable(self.name)


def printable(text: str) -> str:
    """``text`` with the undecodable bytes of a file name shown as ``\\xNN``: safe to print and to write as UTF-8.

    Python reads a file name that is not UTF-8 with "surrogate escapes", which no UTF-8 file or terminal takes.
    """
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def cap_problem(where: str, total: int, cap: int, what: str = "images") -> InputProblem:
    """The warning for a folder / CSV / manifest holding more than ``--max-images``: how many were skipped, how to raise it."""
    return InputProblem(where, f"holds {total:,} {what}; only the first {cap:,} are used ({total - cap:,} skipped); "
                               f"raise the cap with --max-images {total}.", fatal=False)


def _walk_images(folder: Path) -> Iterator[Path]:
    """Image files under ``folder`` (hidden files and folders skipped, symlinked folders not followed), unsorted."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            path = Path(root, name)
            if not name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                yield path


def _image_files(folder: Path, max_images: int | None = None) -> tuple[list[Path], int]:
    """The first ``max_images`` image files in sorted order, and how many there are in all.

    Only ``max_images`` paths are held at a time (a heap), so a folder of millions lists in flat memory.
    """
    total = 0

    def counted() -> Iterator[Path]:
        nonlocal total
        for path in _walk_images(folder):
            total += 1
            yield path

    chosen = sorted(counted()) if max_images is None else heapq.nsmallest(max_images, counted())
    return chosen, total


def inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` (links followed) lies under ``folder``."""
    try:
        path.resolve().relative_to(folder.resolve())
    except (ValueError, OSError, RuntimeError):
        return False
    return True


def read_label_csv(path: Path, class_names: Sequence[str], max_images: int | None = None,
                   allow_outside: bool = False) -> tuple[list[PhotoSource], list[InputProblem]]:
    """``file,label`` rows (header optional; paths relative to the CSV's folder); rows past ``max_images`` are counted, not read.

    A row's file must lie under the CSV's own folder (``../x`` and ``/etc/...`` are refused, row by row) unless
    ``allow_outside``: a CSV from elsewhere must not make the report read, or copy, any file on the machine.
    """
    sources: list[PhotoSource] = []
    problems: list[InputProblem] = []
    skipped = 0
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for number, row in enumerate(csv.reader(handle), start=1):
                if number == 1 and [c.strip().lower() for c in row[:2]] == ["file", "label"]:
                    continue
                if not row or not "".join(row).strip():
                    continue
                if max_images is not None and len(sources) >= max_images:
                    skipped += 1
                    continue
                if len(row) < 2:
                    problems.append(InputProblem(f"{path}:{number}", "expected `file,label`."))
                    continue
                file, label_text = row[0].strip(), row[1].strip()
                location = file if is_url(file) else str(path.parent / file)
                if not is_url(file) and not allow_outside and not inside(path.parent / file, path.parent):
                    problems.append(InputProblem(f"{path}:{number}", f"{file!r} lies outside the CSV's folder "
                                                                     f"{path.parent}; a CSV reads only files under its "
                                                                     f"own folder (--allow-outside-csv lifts that)."))
                    continue
                label = match_label(label_text, class_names)
                if label is None:
                    problems.append(InputProblem(f"{path}:{number}", f"label {label_text!r} is not one of the classes "
                                                                     f"({', '.join(class_names)}); predicted without "
                                                                     f"a label.", fatal=False))
                sources.append(PhotoSource(location, file, label, label_text))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return [], [InputProblem(str(path), f"cannot read label CSV ({exc}).")]
    if skipped:
        problems.append(cap_problem(str(path), len(sources) + skipped, len(sources), "rows"))
    return sources, problems


def expand_folder(folder: Path, class_names: Sequence[str], max_images: int | None = None,
                  allow_outside_csv: bool = False) -> tuple[list[PhotoSource], list[InputProblem]]:
    """A folder's images; labelled by ``labels.csv`` if present, else by class-named sub-folders."""
    csv_path = next((folder / n for n in ("labels.csv", "labels.CSV") if (folder / n).is_file()), None)
    if csv_path is not None:
        return read_label_csv(csv_path, class_names, max_images, allow_outside_csv)
    subfolders = {p.name: match_label(p.name, class_names) for p in folder.iterdir() if p.is_dir()}
    labelled = any(v is not None for v in subfolders.values())
    sources = []
    files, total = _image_files(folder, max_images)
    for file in files:
        rel = file.relative_to(folder)
        label_text = rel.parts[0] if labelled and len(rel.parts) > 1 else None
        label = subfolders.get(label_text) if label_text is not None else None
        sources.append(PhotoSource(str(file), rel.as_posix(), label, label_text))
    if not sources:
        return [], [InputProblem(str(folder), "folder holds no images (.jpg/.jpeg/.png/.webp/...).")]
    return sources, [cap_problem(str(folder), total, len(sources))] if total > len(sources) else []


def url_name(url: str) -> str:
    """A short display name for a URL: its last path segment (IIIF's ``default.jpg`` gets its parent too)."""
    parts = [unquote(p) for p in urlparse(url).path.split("/") if p]
    if not parts:
        return urlparse(url).netloc or url
    if parts[-1].startswith("default.") and len(parts) >= 5:  # {id}/{region}/{size}/{rotation}/default.jpg
        return parts[-5]
    return parts[-1]


def safe_stem(name: str) -> str:
    """File-system-safe stem for saved per-photo outputs."""
    stem = Path(name).stem if "/" not in name else Path(name.replace("/", "_")).stem
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:60] or "photo"


def expand_inputs(inputs: Iterable[str], class_names: Sequence[str], max_images: int | None = DEFAULT_MAX_IMAGES,
                  allow_outside_csv: bool = False) -> tuple[list[PhotoSource], list[InputProblem]]:
    """Files, folders (recursively; labelled layouts recognised), ``*.csv`` label files and URLs.

    Each folder or CSV yields at most ``max_images`` sources (``None``: no cap), with a warning
    saying how many were skipped. IIIF manifests (``*.json`` or JSON behind a URL) are handled by
    :mod:`fmnist.photos.iiif`; here a URL is just a source, sniffed for JSON when it is fetched.
    """
    sources: list[PhotoSource] = []
    problems: list[InputProblem] = []
    for item in inputs:
        found, issues = expand_input(item, class_names, max_images, allow_outside_csv)
        sources += found
        problems += issues
    return sources, problems


def expand_input(item: str, class_names: Sequence[str], max_images: int | None = DEFAULT_MAX_IMAGES,
                 allow_outside_csv: bool = False) -> tuple[list[PhotoSource], list[InputProblem]]:
    """One command-line input (file, folder, CSV or URL) -> its sources and problems; see :func:`expand_inputs`."""
    if is_url(item):
        scheme = urlparse(item).scheme.lower()
        if scheme not in ("http", "https"):
            return [], [InputProblem(item, f"only http(s) URLs are supported, not {scheme}://.")]
        return [PhotoSource(item, url_name(item))], []
    path = Path(item)
    if path.is_dir():
        return expand_folder(path, class_names, max_images, allow_outside_csv)
    if path.is_file() and path.suffix.lower() == ".csv":
        return read_label_csv(path, class_names, max_images, allow_outside_csv)
    if path.exists() or path.suffix:
        return [PhotoSource(str(path), path.name)], []  # reading it reports any problem
    return [], [InputProblem(item, "no such file or folder.")]


def crop_region(image: Image.Image, region: tuple[float, float, float, float] | None) -> Image.Image:
    """Crop to ``(x, y, w, h)`` given as fractions of the image (e.g. an IIIF ``xywh`` selector)."""
    if region is None:
        return image
    x, y, w, h = region
    box = (max(0, round(x * image.width)), max(0, round(y * image.height)),
           min(image.width, round((x + w) * image.width)), min(image.height, round((y + h) * image.height)))
    if box[2] - box[0] < 1 or box[3] - box[1] < 1:
        raise PhotoError(f"annotation region {region} lies outside the image.")
    return image.crop(box)


def load_photo(source: PhotoSource | str, recipe: str = "ours", timeout: float = DEFAULT_TIMEOUT,
               max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS, *,
               allow_private: bool = False) -> Preprocessed:
    """Read, validate and preprocess one photo; raises :class:`PhotoError` with a one-line reason."""
    location = source.location if isinstance(source, PhotoSource) else str(source)
    region = source.region if isinstance(source, PhotoSource) else None
    image = decode_image(read_bytes(location, timeout, max_bytes, allow_private=allow_private), max_pixels)
    return preprocess(crop_region(image, region), recipe)
