"""IIIF Presentation manifests and their annotations, as study B §6 used them.

Study B put 15 web photos on IIIF canvases and labelled each with an annotation whose
HTML body reads ``<p>True: Shirt</p>`` (later also ``Predicted:`` / ``Confidence:``). This
module reads such a manifest -- Presentation 2 (``sc:Manifest``, ``otherContent`` ->
``sc:AnnotationList`` of ``oa:Annotation`` with ``cnt:ContentAsText`` ``chars``) or
Presentation 3 (``Manifest``, ``annotations`` -> ``AnnotationPage`` of ``Annotation`` with
``TextualBody`` ``value``) -- from a file or URL, follows referenced annotation lists, and
yields one :class:`~fmnist.photos.inputs.PhotoSource` per labelled region (image URL, label,
``xywh`` crop). :func:`prediction_annotations` writes a model's predictions back in the
same shape, so they load into the same viewers.

Annotation lists referenced by URL are looked for first as a file of the same name next to
a local manifest (study B downloaded its annotations as JSON files), then fetched -- from public
hosts only unless ``allow_private``, see :mod:`fmnist.photos.fetch`. Documents from strangers are
bounded: JSON size (``max_json_bytes``), nesting depth (:data:`MAX_JSON_DEPTH`) and canvases,
annotation lists and images per manifest (``max_images``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

from fmnist.data.classes import match_label
from fmnist.errors import FmnistError
from fmnist.files import write_json_atomic
from fmnist.photos.fetch import human_bytes
from fmnist.photos.inputs import (
    DEFAULT_MAX_IMAGES,
    DEFAULT_TIMEOUT,
    InputProblem,
    PhotoError,
    PhotoSource,
    cap_problem,
    is_url,
    read_bytes,
    url_name,
)

DEFAULT_MAX_JSON_BYTES = 16 * 2**20  # a 1,000-page book's manifest is a few MB
MAX_JSON_DEPTH = 64  # IIIF manifests nest about 10 deep; deeper is an attack or an accident
CONTEXT_V2 = "http://iiif.io/api/presentation/2/context.json"
CONTEXT_V3 = "http://iiif.io/api/presentation/3/context.json"
_KEYS = {"true": "true", "label": "true", "predicted": "predicted", "prediction": "predicted",
         "confidence": "confidence"}
_FIELD = re.compile(r"\b(true|label|predicted|prediction|confidence)\s*:\s*(.*?)\s*(?=\b(?:true|label|predicted|"
                    r"prediction|confidence)\s*:|$)", re.IGNORECASE | re.DOTALL)


class IIIFError(FmnistError):
    """A manifest or annotation list that cannot be read or is not IIIF."""


# ----------------------------------------------------------------------------- annotation text


class _TextExtractor(HTMLParser):
    """HTML -> text with one line per block element (``<p>``, ``<br>``, ``<div>``, ``<li>``)."""

    BLOCKS = {"p", "br", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_text(html: str) -> list[str]:
    """Non-empty text lines of an annotation body (HTML or plain text)."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return [line.strip() for line in "".join(parser.parts).splitlines() if line.strip()]


def parse_fields(html: str) -> dict[str, Any]:
    """``<p>True: Shirt</p><p>Predicted: Coat</p><p>Confidence: 0.87</p>`` -> ``{"true": "Shirt", ...}``.

    Keys are case-insensitive, may share a line, and ``Confidence`` accepts ``0.87`` or ``87%``;
    other lines are ignored.
    """
    fields: dict[str, Any] = {}
    for line in html_text(html):
        for key, value in _FIELD.findall(line):
            name = _KEYS[key.lower()]
            value = value.strip()
            if not value or name in fields:
                continue
            if name == "confidence":
                number = re.match(r"^([0-9]*\.?[0-9]+)\s*(%?)", value)
                if not number:
                    continue
                fields[name] = float(number.group(1)) / (100.0 if number.group(2) else 1.0)
            else:
                fields[name] = value
    return fields


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


def _too_deep(value: Any, limit: int) -> bool:
    """Whether containers nest more than ``limit`` levels (checked without recursion, so any depth is safe)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def parse_json(data: bytes, location: str, max_json_bytes: int = DEFAULT_MAX_JSON_BYTES) -> Any:
    """A JSON document from untrusted bytes: size- and depth-capped, every failure one :class:`IIIFError` sentence."""
    if len(data) > max_json_bytes:
        raise IIIFError(f"{location}: JSON document is {human_bytes(len(data))}, over the {human_bytes(max_json_bytes)} "
                        f"cap; raise it with --max-json-bytes.")
    too_deep = IIIFError(f"{location}: JSON is nested more than {MAX_JSON_DEPTH} levels deep (IIIF manifests need "
                         f"about 10); refused as malformed or hostile.")
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except RecursionError:  # the C decoder gives up near Python's recursion limit (~1,000 levels)
        raise too_deep from None
    except (UnicodeDecodeError, ValueError) as exc:  # ValueError: JSONDecodeError, or an over-long integer
        raise IIIFError(f"{location}: not valid JSON ({exc}).") from None
    if isinstance(document, (dict, list)) and _too_deep(document, MAX_JSON_DEPTH):
        raise too_deep
    return document


def load_json(location: str, timeout: float = DEFAULT_TIMEOUT, max_json_bytes: int = DEFAULT_MAX_JSON_BYTES, *,
              allow_private: bool = False) -> Any:
    """JSON from a file or http(s) URL, with the photo loader's timeout and the JSON size cap."""
    try:
        data = read_bytes(location, timeout, max_json_bytes, allow_private=allow_private)
    except PhotoError as exc:
        hint = " (JSON documents are capped by --max-json-bytes)" if "size cap" in str(exc) else ""
        raise IIIFError(f"{location}: {str(exc).rstrip('.')}{hint}.") from None
    return parse_json(data, location, max_json_bytes)


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


# ----------------------------------------------------------------------------- writing


@dataclass
class PredictionRecord:
    """One prediction to write back onto a canvas."""

    canvas: str
    predicted: str
    confidence: float
    true: str | None = None
    xywh: tuple[float, float, float, float] | None = None
    model: str | None = None


def body_html(record: PredictionRecord) -> str:
    lines = []
    if record.true is not None:
        lines.append(f"True: {record.true}")
    lines += [f"Predicted: {record.predicted}", f"Confidence: {record.confidence:.4f}"]
    if record.model:
        lines.append(f"Model: {record.model}")
    return "".join(f"<p>{_escape(line)}</p>" for line in lines)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def prediction_annotations(records: Sequence[PredictionRecord], version: int = 2,
                           list_id: str = "predictions.json") -> dict:
    """An ``sc:AnnotationList`` (v2) or ``AnnotationPage`` (v3) of ``commenting`` annotations, one per record."""
    items = []
    for number, record in enumerate(records, start=1):
        fragment = record.canvas + ("#xywh=" + ",".join(f"{v:g}" for v in record.xywh) if record.xywh else "")
        annotation_id = f"{list_id}#annotation-{number}"
        if version == 2:
            items.append({
                "@id": annotation_id, "@type": "oa:Annotation", "motivation": ["oa:commenting"],
                "resource": [{"@type": "cnt:ContentAsText", "format": "text/html", "chars": body_html(record)}],
                "on": fragment,
            })
        else:
            items.append({
                "id": annotation_id, "type": "Annotation", "motivation": "commenting",
                "body": {"type": "TextualBody", "format": "text/html", "value": body_html(record)},
                "target": fragment,
            })
    if version == 2:
        return {"@context": CONTEXT_V2, "@id": list_id, "@type": "sc:AnnotationList", "resources": items}
    return {"@context": CONTEXT_V3, "id": list_id, "type": "AnnotationPage", "items": items}


def write_prediction_annotations(records: Sequence[PredictionRecord], path: Path, version: int = 2) -> Path:
    return write_json_atomic(path, prediction_annotations(records, version, path.name))
