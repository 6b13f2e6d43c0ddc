"""Class names as people write them: folder names, CSV labels and annotations mapped to a dataset's classes."""

from __future__ import annotations

import re
from collections.abc import Sequence

_SYNONYMS = {  # folder names people (and clothing-dataset-small) use for Fashion-MNIST classes
    "tshirt": "tshirttop", "tee": "tshirttop", "top": "tshirttop", "tshirts": "tshirttop",
    "pants": "trouser", "trousers": "trouser", "jeans": "trouser",
    "sweater": "pullover", "jumper": "pullover", "hoodie": "pullover",
    "outwear": "coat", "outerwear": "coat", "jacket": "coat",
    "sneakers": "sneaker", "sandals": "sandal", "bags": "bag", "handbag": "bag",
    "boot": "ankleboot", "boots": "ankleboot", "ankleboots": "ankleboot",
}


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def match_label(text: str, class_names: Sequence[str]) -> int | None:
    """Class index for a label such as ``Shirt``, ``t-shirt_top``, ``T-shirt/top``, ``pants`` or ``6``."""
    key = _norm(text)
    if not key:
        return None
    names = {_norm(name): i for i, name in enumerate(class_names)}
    if key in names:
        return names[key]
    if key.isdigit() and int(key) < len(class_names):
        return int(key)
    key = _SYNONYMS.get(key, key)
    if key in names:
        return names[key]
    if key.endswith("s") and key[:-1] in names:
        return names[key[:-1]]
    return None
