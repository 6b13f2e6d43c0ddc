"""``python -m fmnist.reproduce`` = ``fmnist reproduce`` (a shim: the verb is :mod:`fmnist.commands.reproduce`)."""

from __future__ import annotations

import sys

from fmnist.commands.shims import module_main


def cli_main(argv: list[str] | None = None) -> int:
    return module_main("reproduce", "python -m fmnist.reproduce", argv)


if __name__ == "__main__":
    sys.exit(cli_main())
