"""Photos read as a stream: the command line's inputs expanded, fetched, decoded and preprocessed one at a time.

Why a module of its own: this is where untrusted inputs meet the limits of :class:`PhotoOptions` (sizes,
pixels, hosts, CSV paths); each photo is dropped after its 28x28 input is made, so memory stays flat over a
long folder or manifest. A bad input is one line on stderr (:func:`say`) and the stream carries on.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmnist.errors import FmnistError
from fmnist.photos.fetch import BoundedCache
from fmnist.photos.iiif import manifest_sources, parse_manifest, read_manifest
from fmnist.photos.iiif_json import DEFAULT_MAX_JSON_BYTES, IIIFError, parse_json
from fmnist.photos.inputs import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_IMAGES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_TIMEOUT,
    InputProblem,
    PhotoError,
    PhotoSource,
    crop_region,
    decode_image,
    expand_input,
    is_url,
    read_bytes,
)
from fmnist.photos.preprocess import PREPROCESSORS, RECOMMENDED, Preprocessed, preprocess


@dataclass(frozen=True)
class PhotoOptions:
    """How photos are read and preprocessed (the limits guard against hostile inputs; see the CLI's help)."""

    preprocess: str = RECOMMENDED
    annotations: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_images: int = DEFAULT_MAX_IMAGES
    max_json_bytes: int = DEFAULT_MAX_JSON_BYTES
    allow_private_hosts: bool = False
    allow_outside_csv: bool = False  # a CSV's rows may name files outside the CSV's folder

    def check(self) -> None:
        for flag, value in (("--timeout", self.timeout), ("--max-bytes", self.max_bytes),
                            ("--max-pixels", self.max_pixels), ("--max-images", self.max_images),
                            ("--max-json-bytes", self.max_json_bytes)):
            if value <= 0:
                raise FmnistError(f"{flag} must be positive, got {value}.")
        if self.preprocess not in PREPROCESSORS:
            raise FmnistError(f"--preprocess must be one of {', '.join(sorted(PREPROCESSORS))}, got "
                              f"{self.preprocess!r}.")


@dataclass
class PhotoResult:
    source: PhotoSource
    input: Preprocessed
    probs: np.ndarray | None = None  # [C]
    input_png: Path | None = None


def say(problem: InputProblem | str, message: str | None = None) -> None:
    """One line per bad input on stderr: ``name: reason`` (warnings say so)."""
    if isinstance(problem, InputProblem):
        prefix = "" if problem.fatal else "warning: "
        print(f"{problem.name}: {prefix}{problem.message}", file=sys.stderr)
    else:
        print(f"{problem}: {message}", file=sys.stderr)


def manifest_inputs(location: str, class_names: Sequence[str], args: PhotoOptions,
                      data: object = None) -> tuple[object, list[PhotoSource], list[InputProblem]]:
    """``(manifest or None, its sources, problems)`` for a manifest file/URL, or for its already-parsed JSON."""
    limits = {"allow_private": args.allow_private_hosts, "max_images": args.max_images}
    try:
        manifest = (read_manifest(location, args.annotations, args.timeout, args.max_json_bytes, **limits)
                    if data is None else
                    parse_manifest(data, location, args.annotations, args.timeout, args.max_json_bytes, **limits))
    except IIIFError as exc:
        return None, [], [InputProblem(location, str(exc).removeprefix(f"{location}: "))]
    sources, problems = manifest_sources(manifest, class_names, args.max_images)
    return manifest, sources, problems


def iter_sources(inputs: Iterable[str], class_names: Sequence[str], args: PhotoOptions, manifests: list,
                 report: Callable[[InputProblem], None]) -> Iterator[PhotoSource]:
    """The command line's inputs, in order, expanded one at a time (``*.json`` files as IIIF manifests)."""
    for item in inputs:
        if not is_url(item) and Path(item).suffix.lower() == ".json" and not Path(item).is_dir():
            manifest, found, problems = manifest_inputs(item, class_names, args)
            if manifest is not None:
                manifests.append(manifest)
        else:
            found, problems = expand_input(item, class_names, args.max_images, args.allow_outside_csv)
        for problem in problems:
            report(problem)
        yield from found


def iter_loaded(sources: Iterable[PhotoSource], class_names: Sequence[str], args: PhotoOptions,
                manifests: list, report: Callable[[InputProblem], None],
                cache: BoundedCache | None = None) -> Iterator[PhotoResult]:
    """Read + preprocess each source as it comes; URLs answering with JSON are read as IIIF manifests.

    Only the 28x28 input is kept per photo; downloads are reused through a bounded cache (several
    IIIF regions usually crop one image), so memory does not grow with the number of photos.
    """
    cache = BoundedCache() if cache is None else cache

    def load(source: PhotoSource) -> PhotoResult | list[PhotoSource] | None:
        try:
            data = cache.get(source.location)
            if data is None:
                data = read_bytes(source.location, args.timeout, args.max_bytes, allow_private=args.allow_private_hosts)
                if is_url(source.location) and data.lstrip()[:1] in (b"{", b"["):
                    if source.meta.get("manifest"):
                        raise PhotoError("answered with JSON, not an image.")
                    try:
                        document = parse_json(data, source.location, args.max_json_bytes)
                    except IIIFError as exc:
                        raise PhotoError(str(exc).removeprefix(f"{source.location}: ")) from None
                    manifest, found, problems = manifest_inputs(source.location, class_names, args, document)
                    for problem in problems:
                        report(problem)
                    if manifest is not None:
                        manifests.append(manifest)
                    return found
                cache.put(source.location, data)
            image = crop_region(decode_image(data, args.max_pixels), source.region)
            result = PhotoResult(source, preprocess(image, args.preprocess))
            if not result.input.segmented:
                report(InputProblem(source.name, "no garment stood out from the background; the whole photo "
                                                 "was used (see its saved input).", fatal=False))
            return result
        except PhotoError as exc:
            report(InputProblem(source.name, str(exc)))
            return None

    for source in sources:
        loaded = load(source)
        if isinstance(loaded, list):  # a manifest behind a URL: its photos, each as it comes
            for inner in loaded:
                result = load(inner)
                if isinstance(result, PhotoResult):
                    yield result
        elif loaded is not None:
            yield loaded
