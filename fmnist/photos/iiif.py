"""IIIF Presentation manifests and their annotations, as study B §6 used them.

Study B put 15 web photos on IIIF canvases and labelled each with an annotation whose
HTML body reads ``<p>True: Shirt</p>`` (later also ``Predicted:`` / ``Confidence:``). This
module reads such a manifest -- Presentation 2 (``sc:Manifest``, ``otherContent`` ->
``sc:AnnotationList`` of ``oa:Annotation`` with ``cnt:ContentAsText`` ``chars``) or
Presentation 3 (``Manifest``, ``annotations`` -> ``AnnotationPage`` of ``Annotation`` with
``TextualBody`` ``value``) -- from a file or URL, follows referenced annotation lists, and
yields one :class:`~fmnist.photos.inputs.PhotoSource` per labelled region (image URL, label,
``xywh`` crop). The annotations' text, read and written, is :mod:`fmnist.photos.iiif_text`; the caps on
JSON from strangers are :mod:`fmnist.photos.iiif_json`.

Annotation lists referenced by URL are looked for first as a file of the same name next to
a local manifest (study B downloaded its annotations as JSON files), then fetched -- from public
hosts only unless ``allow_private``, see :mod:`fmnist.photos.fetch`. Documents from strangers are
bounded: JSON size (``max_json_bytes``), nesting depth (:data:`MAX_JSON_DEPTH`) and canvases,
annotation lists and images per manifest (``max_images``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

from fmnist.data.classes import match_label
from fmnist.photos.iiif_json import DEFAULT_MAX_JSON_BYTES, IIIFError, load_json
from fmnist.photos.iiif_text import parse_fields
from fmnist.photos.inputs import (
    DEFAULT_MAX_IMAGES,
    DEFAULT_TIMEOUT,
    InputProblem,
    PhotoSource,
    cap_problem,
    is_url,
    url_name,
)

# ----------------------------------------------------------------------------- model


@dataclass
class Annotation:
    """A textual annotation on (a region of) a canvas."""

    canvas: str  # canvas id without fragment
    text: str
    xywh: tuple[float, float, float, float] | None = None  # canvas coordinates
    id: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def true(self) -> str | None:
        return self.fields.get("true")

    @property
    def predicted(self) -> str | None:
        return self.fields.get("predicted")

    @property
    def confidence(self) -> float | None:
        return self.fields.get("confidence")


@dataclass
class Canvas:
    id: str
    label: str
    image: str | None  # image URL (or a path, for local manifests with relative ids)
    width: float | None = None
    height: float | None = None
    annotations: list[Annotation] = field(default_factory=list)


@dataclass
class Manifest:
    id: str
    version: int  # 2 or 3
    label: str
    canvases: list[Canvas]
    location: str  # where it was read from
    problems: list[InputProblem] = field(default_factory=list)

    def annotations(self) -> list[Annotation]:
        return [a for c in self.canvases for a in c.annotations]


# ----------------------------------------------------------------------------- reading


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _id(obj: Any) -> str | None:
    if isinstance(obj, str):
        return obj
    if isinstance(obj, dict):
        value = obj.get("id", obj.get("@id"))
        return value if isinstance(value, str) else None
    return None


def _type(obj: Any) -> str:
    if not isinstance(obj, dict):
        return ""
    value = obj.get("type", obj.get("@type", ""))
    value = value[0] if isinstance(value, list) and value else value
    return str(value).split(":")[-1]


def _label(value: Any) -> str:
    """v2 labels are strings (or lists of them / ``@value`` objects), v3 are language maps."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if "@value" in value:
            return str(value["@value"])
        for texts in value.values():
            if texts:
                return _label(texts)
    if isinstance(value, list) and value:
        return _label(value[0])
    return ""


_XYWH = re.compile(r"xywh=(?:pixel:)?\s*([-0-9.]+),([-0-9.]+),([-0-9.]+),([-0-9.]+)")


def _find_xywh(obj: Any) -> tuple[float, float, float, float] | None:
    """The first ``xywh=`` fragment anywhere in a target / selector structure."""
    if isinstance(obj, str):
        match = _XYWH.search(obj)
        return tuple(float(v) for v in match.groups()) if match else None  # type: ignore[return-value]
    if isinstance(obj, dict):
        for key in ("value", "default", "selector", "item"):
            if key in obj:
                found = _find_xywh(obj[key])
                if found:
                    return found
    if isinstance(obj, list):
        for item in obj:
            found = _find_xywh(item)
            if found:
                return found
    return None


def _target(obj: Any) -> tuple[str | None, tuple[float, float, float, float] | None]:
    """Canvas id and ``xywh`` of a v2 ``on`` / v3 ``target`` (string, SpecificResource, or a list)."""
    for item in _as_list(obj):
        if isinstance(item, str):
            return item.split("#", 1)[0], _find_xywh(item)
        if isinstance(item, dict):
            source = item.get("full", item.get("source", item.get("id", item.get("@id"))))
            canvas = _id(source)
            if canvas:
                return canvas.split("#", 1)[0], _find_xywh(item.get("selector")) or _find_xywh(canvas)
    return None, None


def _body_text(annotation: dict) -> str:
    """Text of a v2 ``resource`` (``chars``) or v3 ``body`` (``value``), joined when there are several."""
    texts = []
    for body in _as_list(annotation.get("resource", annotation.get("body"))):
        if isinstance(body, str):
            continue  # a link to an external body; study B never used those
        if isinstance(body, dict):
            for key in ("chars", "value"):
                if isinstance(body.get(key), str):
                    texts.append(body[key])
            for item in _as_list(body.get("items")):  # v3 Choice bodies
                if isinstance(item, dict) and isinstance(item.get("value"), str):
                    texts.append(item["value"])
    return "\n".join(texts)


def parse_annotations(container: dict) -> list[Annotation]:
    """Annotations of an ``sc:AnnotationList`` (``resources``) or ``AnnotationPage`` (``items``)."""
    result = []
    for raw in _as_list(container.get("resources", container.get("items"))):
        if not isinstance(raw, dict) or _type(raw) != "Annotation":
            continue
        canvas, xywh = _target(raw.get("on", raw.get("target")))
        text = _body_text(raw)
        if canvas is None or not text:
            continue
        result.append(Annotation(canvas, text, xywh, _id(raw), parse_fields(text)))
    return result


def resolve_reference(reference: str, base: str) -> str:
    """Where to read a referenced resource from, relative to the document that names it.

    Absolute URLs from a *local* manifest are first looked for as a same-named file next to
    it (an offline copy), then used as URLs; relative references join the base path or URL.
    """
    if is_url(reference):
        if not is_url(base):
            segment = [p for p in urlparse(reference).path.split("/") if p]
            if segment:
                local = Path(base).parent / segment[-1]
                if local.is_file():
                    return str(local)
        return reference
    if is_url(base):
        return urljoin(base, reference)
    return str(Path(base).parent / reference)


def _image_url(canvas: dict, version: int) -> str | None:
    """The painted image of a canvas; a bare image service becomes its ``full`` image request."""
    painting = []
    if version == 2:
        painting = [image.get("resource") for image in _as_list(canvas.get("images")) if isinstance(image, dict)]
    else:
        for page in _as_list(canvas.get("items")):
            for annotation in _as_list(page.get("items") if isinstance(page, dict) else None):
                if isinstance(annotation, dict):
                    painting.append(annotation.get("body"))
    for resource in painting:
        for body in _as_list(resource):
            if not isinstance(body, dict):
                if isinstance(body, str):
                    return body
                continue
            if _type(body) == "Choice":
                body = next((b for b in _as_list(body.get("items", body.get("default"))) if isinstance(b, dict)), body)
            identifier = _id(body)
            services = _as_list(body.get("service"))
            if identifier and not identifier.rstrip("/").endswith("info.json") and (
                    not services or re.search(r"\.(jpe?g|png|webp|gif|tiff?)$", identifier, re.I)):
                return identifier
            for service in services:
                base = _id(service)
                if base:
                    base = re.sub(r"/info\.json$", "", base.rstrip("/"))
                    return f"{base}/full/{'full' if version == 2 else 'max'}/0/default.jpg"
            if identifier:
                return identifier
    return None


def detect_version(data: dict) -> int | None:
    """2 or 3 for a Presentation manifest, ``None`` for anything else."""
    if not isinstance(data, dict):
        return None
    context = " ".join(str(c) for c in _as_list(data.get("@context")))
    kind = _type(data)
    if kind == "Manifest":
        return 3 if ("presentation/3" in context or "type" in data) else 2
    return None


def parse_manifest(data: Any, location: str, extra_annotations: Sequence[str] = (),
                   timeout: float = DEFAULT_TIMEOUT, max_json_bytes: int = DEFAULT_MAX_JSON_BYTES, *,
                   allow_private: bool = False, max_images: int | None = DEFAULT_MAX_IMAGES) -> Manifest:
    """Canvases, their images and every textual annotation (embedded, referenced, or passed in).

    At most ``max_images`` canvases are read and at most as many referenced annotation lists
    fetched (``None``: no cap); the rest are counted in a warning in ``problems``.
    """
    version = detect_version(data)
    if version is None:
        kind = _type(data) if isinstance(data, dict) else type(data).__name__
        hint = (" (an annotation list needs its manifest: pass the manifest and this list with --annotations)"
                if kind in ("AnnotationList", "AnnotationPage") else "")
        raise IIIFError(f"{location}: not a IIIF Presentation 2/3 manifest (type {kind or 'missing'}){hint}.")
    problems: list[InputProblem] = []
    raw_canvases = ([c for s in _as_list(data.get("sequences")) if isinstance(s, dict)
                     for c in _as_list(s.get("canvases"))] if version == 2 else _as_list(data.get("items")))
    canvases: dict[str, Canvas] = {}
    references: list[str] = []
    total_canvases = sum(isinstance(raw, dict) and _type(raw) == "Canvas" for raw in raw_canvases)
    for raw in raw_canvases:
        if not isinstance(raw, dict) or _type(raw) != "Canvas":
            continue
        if max_images is not None and len(canvases) >= max_images:
            problems.append(cap_problem(location, total_canvases, len(canvases), "canvases"))
            break
        canvas_id = _id(raw) or f"canvas-{len(canvases)}"
        image = _image_url(raw, version)
        if image and not is_url(image):
            image = resolve_reference(image, location)
        canvas = Canvas(canvas_id, _label(raw.get("label")), image, raw.get("width"), raw.get("height"))
        canvases[canvas_id.split("#", 1)[0]] = canvas
        for container in _as_list(raw.get("otherContent" if version == 2 else "annotations")):
            if isinstance(container, dict) and ("resources" in container or "items" in container):
                for annotation in parse_annotations(container):
                    annotation.canvas = annotation.canvas or canvas_id
                    canvas.annotations.append(annotation)
            elif _id(container):
                references.append(resolve_reference(_id(container), location))
    seen_annotations = {(a.id, a.canvas) for c in canvases.values() for a in c.annotations if a.id}
    references = list(dict.fromkeys(references))
    if max_images is not None and len(references) > max_images:
        problems.append(cap_problem(location, len(references), max_images, "referenced annotation lists"))
        references = references[:max_images]
    for reference in [*references, *extra_annotations]:
        try:
            container = load_json(reference, timeout, max_json_bytes, allow_private=allow_private)
        except IIIFError as exc:
            problems.append(InputProblem(reference, str(exc).split(": ", 1)[-1]))
            continue
        if not isinstance(container, dict) or _type(container) not in ("AnnotationList", "AnnotationPage"):
            problems.append(InputProblem(reference, "not a sc:AnnotationList / AnnotationPage."))
            continue
        for annotation in parse_annotations(container):
            if annotation.id and (annotation.id, annotation.canvas) in seen_annotations:
                continue
            target = canvases.get(annotation.canvas)
            if target is None:
                problems.append(InputProblem(reference, f"annotation targets unknown canvas {annotation.canvas}."))
                continue
            target.annotations.append(annotation)
            if annotation.id:
                seen_annotations.add((annotation.id, annotation.canvas))
    if not canvases:
        problems.append(InputProblem(location, "manifest has no canvases."))
    return Manifest(_id(data) or location, version, _label(data.get("label")), list(canvases.values()), location,
                    problems)


def read_manifest(location: str, extra_annotations: Sequence[str] = (), timeout: float = DEFAULT_TIMEOUT,
                  max_json_bytes: int = DEFAULT_MAX_JSON_BYTES, *, allow_private: bool = False,
                  max_images: int | None = DEFAULT_MAX_IMAGES) -> Manifest:
    """Load and parse a manifest from a file or http(s) URL (limits as in :func:`parse_manifest`)."""
    data = load_json(location, timeout, max_json_bytes, allow_private=allow_private)
    return parse_manifest(data, location, extra_annotations, timeout, max_json_bytes, allow_private=allow_private,
                          max_images=max_images)


def _region(xywh: tuple[float, float, float, float] | None, canvas: Canvas) -> tuple[float, float, float, float] | None:
    """Canvas ``xywh`` -> fractions of the image; ``None`` when it is (nearly) the whole canvas or unknown."""
    if xywh is None or not canvas.width or not canvas.height:
        return None
    x, y, w, h = xywh
    fx, fy, fw, fh = x / canvas.width, y / canvas.height, w / canvas.width, h / canvas.height
    if fx <= 0.01 and fy <= 0.01 and fx + fw >= 0.99 and fy + fh >= 0.99:
        return None
    return fx, fy, fw, fh


def manifest_sources(manifest: Manifest, class_names: Sequence[str],
                     max_images: int | None = DEFAULT_MAX_IMAGES) -> tuple[list[PhotoSource], list[InputProblem]]:
    """One source per ``True:``-labelled annotation (cropped to its region), or per canvas when unlabelled.

    At most ``max_images`` sources (``None``: no cap); a warning counts the rest.
    """
    sources: list[PhotoSource] = []
    problems = list(manifest.problems)
    skipped = 0
    for canvas in manifest.canvases:
        name = canvas.label or url_name(canvas.image or canvas.id)
        if not canvas.image:
            problems.append(InputProblem(f"{manifest.location} canvas {canvas.label or canvas.id}",
                                         "canvas has no image."))
            continue
        labelled = [a for a in canvas.annotations if a.true]
        wanted = len(labelled) or 1  # one source per labelled region, or the whole canvas
        room = wanted if max_images is None else min(wanted, max(0, max_images - len(sources)))
        skipped += wanted - room
        meta = {"manifest": manifest.id, "canvas": canvas.id}
        if not labelled and room:
            sources.append(PhotoSource(canvas.image, name, meta=meta))
            continue
        for annotation in labelled[:room]:
            label = match_label(annotation.true, class_names)
            if label is None:
                problems.append(InputProblem(f"{name}", f"label {annotation.true!r} is not one of the classes; "
                                                        f"predicted without a label.", fatal=False))
            sources.append(PhotoSource(canvas.image, name if len(labelled) == 1 else f"{name} {annotation.xywh}",
                                       label, annotation.true, _region(annotation.xywh, canvas),
                                       {**meta, "xywh": annotation.xywh, "annotation": annotation.id,
                                        "study_predicted": annotation.predicted,
                                        "study_confidence": annotation.confidence}))
    if skipped:
        problems.append(cap_problem(manifest.location, len(sources) + skipped, len(sources),
                                    "images and labelled regions"))
    return sources, problems
