"""Terminal output shared by every command: a rich console that does not truncate tables in pipes or files."""

from __future__ import annotations

import sys

from rich.console import Console


def console() -> Console:
    """Rich console; wide enough not to truncate columns when output goes to a file or pipe."""
    return Console() if sys.stdout.isatty() else Console(width=160)
