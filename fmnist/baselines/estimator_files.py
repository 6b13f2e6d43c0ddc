"""Fitted estimators on disk in skops format: loading one cannot run code, and asks only for the types it lists.

Why here and not in :mod:`fmnist.serialization`: skops imports scikit-learn (seconds), and only the baselines
read or write estimators; training and ``fmnist train`` should not pay for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import skops.io as sio

from fmnist.errors import FmnistError
from fmnist.files import write_atomic


def save_estimator(estimator: Any, path: str | Path) -> None:
    """Write a fitted scikit-learn estimator in skops format (loading it cannot run code), atomically."""
    write_atomic(path, lambda handle: sio.dump(estimator, handle))


def load_estimator(path: str | Path, trusted: Iterable[str] = ()) -> Any:
    """A skops file's estimator, provided every type it needs is skops-safe or listed in ``trusted``."""
    path = Path(path)
    try:
        needed = set(sio.get_untrusted_types(file=path))
    except Exception as exc:  # noqa: BLE001 -- any unreadable file is one message
        raise FmnistError(f"{path} is not a readable skops file ({type(exc).__name__}); delete it to refit.") from None
    refused = sorted(needed - set(trusted))
    if refused:
        raise FmnistError(f"refusing to load {path}: it asks for types this baseline never needs "
                          f"({', '.join(refused)}); delete the file to refit.")
    try:
        return sio.load(path, trusted=sorted(needed))
    except Exception as exc:  # noqa: BLE001
        raise FmnistError(f"{path} could not be loaded ({type(exc).__name__}: {exc}); delete it to refit.") from None
