"""Photo inputs: files, folders, ``file,label`` CSVs and http(s) URLs, read with size and time limits, decoded safely."""

from __future__ import annotations

import contextlib
import csv
import http.client
import io
import re
import struct
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from PIL import Image, ImageOps, UnidentifiedImageError

from fmnist.data.classes import match_label
from fmnist.errors import FmnistError
from fmnist.photos.preprocess import Preprocessed, preprocess

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
DEFAULT_TIMEOUT = 15.0  # seconds for a whole URL download (connect + transfer)
DEFAULT_MAX_BYTES = 25 * 2**20  # per file or download; phone photos are a few MB
DEFAULT_MAX_PIXELS = 64_000_000  # a 48 MP phone photo fits; PIL's own bomb limit is 89 MP
USER_AGENT = "fmnist-photos/0.1 (+https://github.com/; urllib)"


class PhotoError(FmnistError):
    """One input could not be used; the message is the one line shown for that input."""


# ----------------------------------------------------------------------------- reading bytes


def is_url(text: str) -> bool:
    """``scheme://...`` (any scheme, so ``ftp://`` is reported as unsupported rather than as a missing file)."""
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text) is not None


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """urllib would follow a redirect to ``ftp://``; we refuse anything but http(s)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, ANN201 (urllib's signature)
        if urlparse(newurl).scheme.lower() not in ("http", "https"):
            raise PhotoError(f"redirected to a non-http(s) URL ({newurl}); refused.")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _human(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB" if n >= 2**10 else f"{n} bytes"


def fetch_url(url: str, timeout: float = DEFAULT_TIMEOUT, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Download ``url`` (http/https only) within ``timeout`` seconds overall and ``max_bytes`` bytes.

    The size cap is checked against ``Content-Length`` before reading and again while
    streaming (servers may omit or lie about it); the deadline is checked between reads,
    and every socket operation also times out, so a trickling server cannot hold us.
    """
    scheme = urlparse(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise PhotoError(f"only http(s) URLs can be fetched, not {scheme}://.")
    deadline = time.monotonic() + timeout
    opener = urllib.request.build_opener(_HttpOnlyRedirects)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "image/*, application/json"})
    try:
        with opener.open(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise PhotoError(f"download is {_human(int(length))}, over the {_human(max_bytes)} size cap.")
            chunks, total = [], 0
            while True:
                if time.monotonic() > deadline:
                    raise PhotoError(f"timed out after {timeout:g} s (download not finished).")
                chunk = response.read1(1 << 16)
                if not chunk:
                    break
                total += len(chunk)
                if total > max_bytes:
                    raise PhotoError(f"download exceeds the {_human(max_bytes)} size cap; stopped.")
                chunks.append(chunk)
            return b"".join(chunks)
    except PhotoError:
        raise
    except urllib.error.HTTPError as exc:
        raise PhotoError(f"HTTP error {exc.code} ({exc.reason}).") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise PhotoError(f"timed out after {timeout:g} s.") from None
        raise PhotoError(f"cannot fetch ({exc.reason}).") from None
    except TimeoutError:  # socket.timeout is an alias since 3.10
        raise PhotoError(f"timed out after {timeout:g} s.") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise PhotoError(f"cannot fetch ({type(exc).__name__}: {exc}).") from None


def read_bytes(location: str | Path, timeout: float = DEFAULT_TIMEOUT, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Bytes of a local file or an http(s) URL, under the same size cap."""
    if isinstance(location, str) and is_url(location):
        return fetch_url(location, timeout, max_bytes)
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
        raise PhotoError(f"file is {_human(size)}, over the {_human(max_bytes)} size cap.")
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
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


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


@dataclass
class InputProblem:
    """An input that yielded no source (missing path, bad CSV row, ...): ``name: message``."""

    name: str
    message: str
    fatal: bool = True  # False: a warning (e.g. an unknown label), the input is still predicted


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def read_label_csv(path: Path, class_names: Sequence[str]) -> tuple[list[PhotoSource], list[InputProblem]]:
    """``file,label`` rows (header optional; paths relative to the CSV's folder)."""
    sources: list[PhotoSource] = []
    problems: list[InputProblem] = []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [InputProblem(str(path), f"cannot read label CSV ({exc}).")]
    rows = list(csv.reader(io.StringIO(text)))
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["file", "label"]:
        rows = rows[1:]
    for number, row in enumerate(rows, start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2:
            problems.append(InputProblem(f"{path}:{number}", "expected `file,label`."))
            continue
        file, label_text = row[0].strip(), row[1].strip()
        location = file if is_url(file) else str(path.parent / file)
        label = match_label(label_text, class_names)
        if label is None:
            problems.append(InputProblem(f"{path}:{number}", f"label {label_text!r} is not one of the classes "
                                                             f"({', '.join(class_names)}); predicted without a label.", fatal=False))
        sources.append(PhotoSource(location, file, label, label_text))
    return sources, problems


def expand_folder(folder: Path, class_names: Sequence[str]) -> tuple[list[PhotoSource], list[InputProblem]]:
    """A folder's images; labelled by ``labels.csv`` if present, else by class-named sub-folders."""
    csv_path = next((folder / n for n in ("labels.csv", "labels.CSV") if (folder / n).is_file()), None)
    if csv_path is not None:
        return read_label_csv(csv_path, class_names)
    subfolders = {p.name: match_label(p.name, class_names) for p in folder.iterdir() if p.is_dir()}
    labelled = any(v is not None for v in subfolders.values())
    sources = []
    for file in _image_files(folder):
        rel = file.relative_to(folder)
        label_text = rel.parts[0] if labelled and len(rel.parts) > 1 else None
        label = subfolders.get(label_text) if label_text is not None else None
        sources.append(PhotoSource(str(file), rel.as_posix(), label, label_text))
    if not sources:
        return [], [InputProblem(str(folder), "folder holds no images (.jpg/.jpeg/.png/.webp/...).")]
    return sources, []


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


def expand_inputs(inputs: Iterable[str], class_names: Sequence[str]) -> tuple[list[PhotoSource], list[InputProblem]]:
    """Files, folders (recursively; labelled layouts recognised), ``*.csv`` label files and URLs.

    IIIF manifests (``*.json`` or JSON behind a URL) are handled by :mod:`fmnist.photos.iiif`; here a
    URL is just a source, sniffed for JSON when it is fetched.
    """
    sources: list[PhotoSource] = []
    problems: list[InputProblem] = []
    for item in inputs:
        if is_url(item):
            scheme = urlparse(item).scheme.lower()
            if scheme not in ("http", "https"):
                problems.append(InputProblem(item, f"only http(s) URLs are supported, not {scheme}://."))
            else:
                sources.append(PhotoSource(item, url_name(item)))
            continue
        path = Path(item)
        if path.is_dir():
            found, issues = expand_folder(path, class_names)
            sources += found
            problems += issues
        elif path.is_file() and path.suffix.lower() == ".csv":
            found, issues = read_label_csv(path, class_names)
            sources += found
            problems += issues
        elif path.exists() or path.suffix:
            sources.append(PhotoSource(str(path), path.name))  # reading it reports any problem
        else:
            problems.append(InputProblem(item, "no such file or folder."))
    return sources, problems


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
               max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS) -> Preprocessed:
    """Read, validate and preprocess one photo; raises :class:`PhotoError` with a one-line reason."""
    location = source.location if isinstance(source, PhotoSource) else str(source)
    region = source.region if isinstance(source, PhotoSource) else None
    image = decode_image(read_bytes(location, timeout, max_bytes), max_pixels)
    return preprocess(crop_region(image, region), recipe)
