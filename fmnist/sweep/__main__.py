"""``python -m fmnist.sweep`` = ``fmnist sweep`` (a shim: the verb is :mod:`fmnist.commands.sweep`)."""

from __future__ import annotations

import sys

from fmnist.commands.shims import module_main


def main(argv: list[str] | None = None) -> int:
    return module_main("sweep", "python -m fmnist.sweep", argv)


if __name__ == "__main__":
    sys.exit(main())
