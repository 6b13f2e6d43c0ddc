"""An argparse that says a usage mistake as the package's one sentence (exit 2, no usage dump)."""

from __future__ import annotations

import argparse
import re

from fmnist.errors import FmnistError


class SentenceParser(argparse.ArgumentParser):
    """argparse that raises :class:`FmnistError` (one sentence, pointing at ``--help``) instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        flag = re.match(r"argument (--[\w-]+): (.*)", message)
        text = f"{flag.group(1)} {flag.group(2)}" if flag else message
        shown = f"python {self.prog}" if self.prog.endswith(".py") else self.prog
        raise FmnistError(f"{text} (see `{shown} --help`).")
