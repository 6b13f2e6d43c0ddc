"""How a run ends early, and what it says: diverged (a non-finite or exploded loss) or stopped by a signal.

Neither may look like a result. A diverged run used to test its NaN weights and write ``test_acc=0.10``
with exit 0; a run stopped by SIGTERM (a scheduler's preemption) exited 0 with no word. Here:

* :class:`DivergenceGuard` watches the training loss (and the validation loss) and stops the run at the
  step it turns non-finite or explodes, before a checkpoint of broken weights is written; the run ends
  in :class:`TrainingDiverged`, one sentence (epoch, step, last finite loss, what to try), and its
  ``metrics.json`` says ``"status": "diverged"``.
* :class:`TrainingStopped` is what a signal ends a run with (a ``KeyboardInterrupt``, so code that lets
  Ctrl-C through lets it through too): the signal, where training was, the checkpoint a resumed run
  continues from, and the exit status a shell expects (128 + the signal's number: 143, 130).
"""

from __future__ import annotations

import math
import signal
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch

from fmnist.errors import FmnistError

STATUS_FINISHED, STATUS_DIVERGED = "finished", "diverged"
# A cross-entropy loss this many times ln(classes) (230 for 10 classes; a fresh model starts near 2.3) means the
# logits are hundreds apart: the run has exploded, whatever it does next.
EXPLODED_FACTOR = 100.0
CHECK_EVERY_ON_ACCELERATORS = 20  # steps between reads of the loss on a GPU (a read waits for the device)


class TrainingDiverged(FmnistError):
    """The loss turned non-finite or exploded; the message is the one sentence the CLI prints."""

    def __init__(self, message: str, facts: dict[str, Any]) -> None:
        super().__init__(message)
        self.facts = facts


@dataclass
class Where:
    """Where a run was when it stopped, and what it can resume from."""

    epoch: int  # counted from 1: the epoch that was running
    step: int  # optimizer steps done
    checkpoint: Path | None = None  # last.ckpt of the run (None: stopped before the first one)
    finished_epochs: int | None = None  # epochs the checkpoint holds
    testing: bool = False  # training had finished; it was validating/testing the best checkpoint


class TrainingStopped(KeyboardInterrupt):
    """A run ended by SIGTERM or SIGINT; :meth:`sentence` says where and how to resume, :attr:`exit_code` is 128+N."""

    def __init__(self, signum: int, where: Where | None = None,
                 resume_hint: str = "run the same command again with --resume") -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.where = where
        self.resume_hint = resume_hint

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum)

    def sentence(self) -> str:
        where = self.where
        if where is None:
            return (f"stopped by {self.name} outside training (before it started or after it finished); nothing is "
                    f"half-written: run the same command again (with --resume if it had made a run folder).")
        at = (f"while testing the finished run (epoch {where.epoch}, step {where.step})" if where.testing
              else f"at epoch {where.epoch}, step {where.step}")
        if where.checkpoint is None:
            return (f"stopped by {self.name} {at}, before the first checkpoint, so nothing can be resumed: run the "
                    f"same command again.")
        return (f"stopped by {self.name} {at}; {self.resume_hint} (it continues from {where.checkpoint}, the end of "
                f"epoch {where.finished_epochs}).")


def _raise_stopped(signum: int, frame: Any) -> None:
    """SIGTERM outside a Lightning run: end like Ctrl-C does. Inside one, Lightning's handler (which calls this one
    too) stops the loop at the next batch, so nothing is raised here then."""
    if signal.getsignal(signum) is _raise_stopped:
        raise TrainingStopped(signum)


@contextmanager
def sigterm_stops_training() -> Iterator[None]:
    """Inside, SIGTERM ends the process with :class:`TrainingStopped` instead of killing it without a word."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_stopped)
    except ValueError:  # not the main thread: signals are not ours to handle
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _loss_of(outputs: Any) -> torch.Tensor | None:
    loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
    return loss if isinstance(loss, torch.Tensor) and loss.numel() == 1 else None


class DivergenceGuard(L.Callback):
    """Stop the run at the step its training loss turns non-finite or explodes (or its validation loss does).

    The check costs nothing on the CPU (every step). On an accelerator the values are kept on the device and
    read every :data:`CHECK_EVERY_ON_ACCELERATORS` steps, so training never waits for a read; the step named
    is still the first bad one. ``max_loss``: the loss called exploded (default 100 x ln(classes)).
    """

    def __init__(self, max_loss: float | None = None) -> None:
        self.max_loss = max_loss
        self._limit = math.inf
        self._state: dict[str, torch.Tensor] | None = None  # first bad step and its loss, last finite loss
        self._hint = ""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        classes = int(getattr(pl_module.hparams, "num_classes", 10) or 10)
        self._limit = self.max_loss if self.max_loss is not None else EXPLODED_FACTOR * math.log(max(classes, 2))
        self._state = None
        lr = getattr(pl_module.hparams, "lr", None)
        hints = [f"lower the learning rate (model.lr, now {lr:g})" if isinstance(lr, float | int)
                 else "lower the learning rate (model.lr)", "clip gradients (--trainer.gradient_clip_val 1.0)"]
        if str(trainer.precision) not in ("32-true", "32", "64-true", "64"):
            hints.append(f"train in float32 (--trainer.precision 32-true; now {trainer.precision})")
        self._hint = ", ".join(hints[:-1]) + " or " + hints[-1]

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = _loss_of(outputs)
        if loss is None:
            return
        value = loss.detach().float()
        if self._state is None:
            nan = torch.tensor(math.nan, device=value.device)
            self._state = {"bad_step": torch.tensor(-1, device=value.device), "bad_loss": nan.clone(),
                           "last_finite": nan.clone(), "bad_epoch": torch.tensor(-1, device=value.device)}
        state = self._state
        fresh = state["bad_step"] < 0
        ok = torch.isfinite(value) & (value <= self._limit)
        first = fresh & ~ok
        # global_step counts optimizer steps already made, so this batch's is global_step (1-based after it).
        state["bad_step"] = torch.where(first, trainer.global_step, state["bad_step"])
        state["bad_epoch"] = torch.where(first, trainer.current_epoch + 1, state["bad_epoch"])
        state["bad_loss"] = torch.where(first, value, state["bad_loss"])
        state["last_finite"] = torch.where(fresh & ok, value, state["last_finite"])
        if value.device.type == "cpu" or trainer.global_step % CHECK_EVERY_ON_ACCELERATORS == 0:
            self._check(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        self._check(trainer)  # training batches not read yet on an accelerator come first
        val_loss = trainer.callback_metrics.get("val_loss")
        if val_loss is None:
            return
        value = float(val_loss)
        if math.isfinite(value) and value <= self._limit:
            return
        last = float(self._state["last_finite"]) if self._state is not None else math.nan
        self._diverged(trainer, trainer.current_epoch + 1, trainer.global_step, "validation loss", value, last)

    def _check(self, trainer: L.Trainer) -> None:
        if self._state is None:
            return
        bad = bool(self._state["bad_step"] >= 0)
        if trainer.world_size > 1:  # every rank stops together, or the others would wait for it forever
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad:
            return
        state = self._state
        step = int(state["bad_step"]) if int(state["bad_step"]) >= 0 else trainer.global_step
        epoch = int(state["bad_epoch"]) if int(state["bad_epoch"]) >= 0 else trainer.current_epoch + 1
        self._diverged(trainer, epoch, step, "training loss", float(state["bad_loss"]), float(state["last_finite"]))

    def _diverged(self, trainer: L.Trainer, epoch: int, step: int, what: str, value: float, last: float) -> None:
        became = f"became {value}" if not math.isfinite(value) else f"exploded to {value:.3g}"
        before = f"the last finite loss was {last:.4g}" if math.isfinite(last) else "no finite loss before it"
        message = (f"training diverged at epoch {epoch}, step {step}: the {what} {became} ({before}); "
                   f"{self._hint}, then run again.")
        facts = {"epoch": epoch, "step": step, "diverged_on": what, "loss": value,
                 "last_finite_loss": last, "max_loss": self._limit}
        raise TrainingDiverged(message, facts)
