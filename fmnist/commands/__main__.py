"""``python -m fmnist.commands VERB ...``: the ``fmnist`` console script without installing it."""

import sys

from fmnist.commands import main

if __name__ == "__main__":
    sys.exit(main())
