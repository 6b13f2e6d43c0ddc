"""``python -m fmnist.reproduce.html_check [PAGE]`` = ``fmnist page-check`` (a shim onto the verb)."""

from __future__ import annotations

import sys

from fmnist.commands.shims import module_main


def cli_main(argv: list[str] | None = None) -> int:
    return module_main("page-check", "python -m fmnist.reproduce.html_check", argv)


if __name__ == "__main__":
    sys.exit(cli_main())
