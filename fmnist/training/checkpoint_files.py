"""Checkpoint files on disk: written atomically, and on ``--resume`` the newest one that still reads.

Lightning writes a checkpoint by truncating the file and writing it again (and copies ``last.ckpt`` the
same way), so a full disk or a kill mid-write leaves a truncated ``last.ckpt`` beside a good ``best.ckpt``,
and ``--resume`` then fails on it. :class:`AtomicCheckpointIO` writes every checkpoint to a temporary
file in the same folder, flushes it and renames it over the old one (:func:`fmnist.files.write_atomic`):
a reader sees the previous good checkpoint or the new one, never half of one, and a full disk is one
sentence. :func:`resume_checkpoint` still copes with a damaged file (an older run, a bad disk): it takes
the newest checkpoint of the run that reads, and says which it skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from fmnist.errors import FmnistError
from fmnist.files import write_atomic
from fmnist.serialization import read_checkpoint

# What a checkpoint needs to continue training (a weights-only file or a stray .ckpt does not).
TRAINING_KEYS = ("state_dict", "loops", "optimizer_states", "epoch", "global_step")


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into a temporary file beside the checkpoint, flushed, then renamed over it."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options.")
        write_atomic(Path(path), lambda handle: torch.save(checkpoint, handle))


@dataclass
class ResumePoint:
    """The checkpoint a resumed run continues from, and the newer ones that could not be read."""

    path: Path
    epoch: int  # epochs finished, counted from 1 (the checkpoint stores Lightning's 0-based index)
    skipped: list[str] = field(default_factory=list)  # why each newer checkpoint cannot be used

    def note(self) -> str | None:
        """The sentence that says a damaged newer checkpoint was passed over (None when none was)."""
        if not self.skipped:
            return None
        return (f"note: {'; '.join(self.skipped)}; resuming from {self.path.name} (end of epoch {self.epoch}), the "
                f"newest checkpoint of {self.path.parent} that reads.")


def _epochs_done(path: Path) -> tuple[int | None, str | None]:
    """``(epochs finished, None)`` for a checkpoint that can resume a run, else ``(None, why not)``."""
    try:
        raw = read_checkpoint(path)
    except FmnistError as exc:
        return None, str(exc).rstrip(".")
    missing = [key for key in TRAINING_KEYS if key not in raw]
    if missing:
        return None, f"{path} is not a training checkpoint (no {', '.join(missing)})"
    return int(raw["epoch"]) + 1, None


def resume_checkpoint(run_dir: Path) -> ResumePoint:
    """The newest readable training checkpoint in ``run_dir/checkpoints`` (by modification time)."""
    folder = run_dir / "checkpoints"
    found = sorted(folder.glob("*.ckpt"), key=lambda p: (p.stat().st_mtime, p.name == "last.ckpt"), reverse=True)
    skipped = []
    for path in found:
        epochs, problem = _epochs_done(path)
        if epochs is not None:
            return ResumePoint(path, epochs, skipped)
        skipped.append(problem)
    if not found:
        raise FmnistError(f"nothing to resume: {folder} holds no checkpoint; start the run without --resume.")
    raise FmnistError(f"nothing to resume in {run_dir}: {'; '.join(skipped)}; start the run again without --resume "
                      f"(or delete that run folder).")
