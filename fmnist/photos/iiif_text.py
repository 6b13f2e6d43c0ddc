"""The text of IIIF annotations, both ways: reading ``True: Shirt`` bodies, writing our predictions back.

Study B labelled each canvas with an HTML body such as ``<p>True: Shirt</p>``; predictions are written in the
same shape (Presentation 2 ``sc:AnnotationList`` or 3 ``AnnotationPage``) so they load into the same viewers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from fmnist.files import write_json_atomic

CONTEXT_V2 = "http://iiif.io/api/presentation/2/context.json"
CONTEXT_V3 = "http://iiif.io/api/presentation/3/context.json"
_KEYS = {"true": "true", "label": "true", "predicted": "predicted", "prediction": "predicted",
         "confidence": "confidence"}
_FIELD = re.compile(r"\b(true|label|predicted|prediction|confidence)\s*:\s*(.*?)\s*(?=\b(?:true|label|predicted|"
                    r"prediction|confidence)\s*:|$)", re.IGNORECASE | re.DOTALL)


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
