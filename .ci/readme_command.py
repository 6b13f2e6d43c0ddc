"""Print one of README's two set-up commands, as CI must run them: ``python3 .ci/readme_command.py run|test``.

``run`` is the first ``bash`` block of README's "Set up and run" section (set up, train and test ``deep``),
``test`` the second (set up, ruff, pytest). Continuation lines (``\\`` at the end) are joined into one line,
so the output is the command a user pastes. Standard library only: it runs before any virtualenv exists.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
NAMES = ("run", "test")


def readme_commands(text: str) -> dict[str, str]:
    """``{"run": ..., "test": ...}`` from README's text; an error names what is missing."""
    section = re.search(r"^## Set up and run\n(.*?)(?=^## )", text, flags=re.M | re.S)
    if section is None:
        raise SystemExit("README.md has no '## Set up and run' section")
    blocks = re.findall(r"^```bash\n(.*?)^```", section.group(1), flags=re.M | re.S)
    if len(blocks) != 2:
        raise SystemExit(f"README.md's 'Set up and run' section has {len(blocks)} bash blocks, not 2")
    return {name: re.sub(r"\s*\\\n\s*", " ", block).strip() for name, block in zip(NAMES, blocks, strict=True)}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in NAMES:
        print(f"usage: python3 {sys.argv[0]} {'|'.join(NAMES)}", file=sys.stderr)
        return 2
    print(readme_commands(README.read_text(encoding="utf-8"))[argv[0]])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
