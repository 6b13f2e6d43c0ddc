"""Every file a config, a docs page or README names exists: pointers do not go stale when code moves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Paths written out in prose or code (`fmnist/training/api.py`, tests/..., configs/...), from the repository root.
REPO_PATH = re.compile(r"(?<![\w./-])((?:fmnist|tests|configs|benchmarks|docs|results)/[\w./-]*\w\.(?:py|yaml|md|png|jsonl|json|csv|html))(?![\w.])")
# Markdown links, relative to the page that holds them.
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
PLACEHOLDERS = ("NAME", "x.yaml", "<", "*")


def _sources() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")), *sorted((REPO / "configs").rglob("*.yaml"))]


def _missing(source: Path) -> list[str]:
    text = source.read_text(encoding="utf-8")
    missing = []
    for match in REPO_PATH.finditer(text):
        path = match.group(1)
        if any(p in path for p in PLACEHOLDERS):
            continue
        if not (REPO / path).exists() and not (source.parent / path).exists():
            missing.append(path)
    if source.suffix == ".md":
        for match in LINK.finditer(text):
            target = match.group(1)
            if re.match(r"^[a-z]+:", target) or any(p in target for p in PLACEHOLDERS):
                continue  # URLs, mailto:, placeholders
            if not (source.parent / target).exists():
                missing.append(target)
    return missing


@pytest.mark.parametrize("source", _sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_named_path_exists(source: Path) -> None:
    assert _missing(source) == []


def test_the_check_finds_a_stale_pointer(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("See `fmnist/no_such_module.py` and [the guide](nowhere.md); `fmnist/ledger.py` is real.\n")
    assert _missing(page) == ["fmnist/no_such_module.py", "nowhere.md"]
