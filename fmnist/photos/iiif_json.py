"""JSON documents from strangers (IIIF manifests, annotation lists): size- and depth-capped, one sentence each.

Why apart from the manifest reader: the caps are the security boundary (a hostile or broken document must
cost no memory and no recursion), and ``fmnist predict`` applies them to every JSON input it reads.
"""

from __future__ import annotations

import json
from typing import Any

from fmnist.errors import FmnistError, human_bytes
from fmnist.photos.inputs import DEFAULT_TIMEOUT, PhotoError, read_bytes

DEFAULT_MAX_JSON_BYTES = 16 * 2**20  # a 1,000-page book's manifest is a few MB
MAX_JSON_DEPTH = 64  # IIIF manifests nest about 10 deep; deeper is an attack or an accident


class IIIFError(FmnistError):
    """A manifest or annotation list that cannot be read or is not IIIF."""


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
