"""Train later epochs on the hardest share of the training images (issue 32: drop easy examples).

Most of Fashion-MNIST is easy after one epoch (trousers, bags, sneakers); the remaining error sits in the
shirt / T-shirt / pullover / coat confusions. :class:`HardExampleSampler` remembers every image's latest
training loss, as the training step computed it anyway (no extra forward pass), and from a chosen epoch on
yields only the ``keep`` share with the highest losses, optionally mixed with an ``explore`` share drawn at
random from the rest so that an image judged easy early can come back. Fewer images per epoch is fewer
steps: the time saved is the share dropped. The idea is airbench96's (KellerJordan/cifar10-airbench), which
scores with a small proxy network; here the network scores itself while it trains.

The sampler is the mechanism (order, loss table, selection); ``FocusOnHardExamples`` (the training layer) is the
callback that wires it into a Lightning fit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DistributedSampler

from fmnist.errors import FmnistError


class HardExampleSampler(DistributedSampler):
    """A shuffling sampler over all ``size`` images, or over the hardest ones once :meth:`focus` was called.

    Under DDP every process draws the same epoch order and takes every ``num_replicas``-th position from ``rank``
    on (padded to equal lengths, as torch's DistributedSampler does), records the losses of its own images, and
    :meth:`merge` sums what the processes recorded, so that every process chooses the same images. It is a
    ``DistributedSampler`` so that Lightning uses it as it is instead of wrapping it.

    Args:
        size: images in the training set.
        keep: share of the images each focused epoch trains on (0 < keep <= 1).
        explore: share of those ``keep`` images drawn at random from the easier rest instead of by loss.
        seed: each epoch's order is a permutation drawn from ``seed`` and the epoch (resumable, repeatable).
        labels: each image's class; given, the hardest ``keep`` share is chosen within each class, so that no
            class drops out of training (nor out of BatchNorm's statistics) because it is easy.
        num_replicas, rank: the processes of a DDP fit and this one's rank (1 and 0 alone).
    """

    def __init__(self, size: int, keep: float, explore: float = 0.0, seed: int = 0,
                 labels: torch.Tensor | None = None, num_replicas: int = 1, rank: int = 0) -> None:
        if size < 1:
            raise FmnistError(f"hard-example selection needs a non-empty training set, got {size} images.")
        check_shares(keep, explore, "hard-example selection")
        if not 0 <= rank < num_replicas:
            raise FmnistError(f"hard-example selection: rank {rank} is not one of {num_replicas} processes.")
        super().__init__(range(size), num_replicas=num_replicas, rank=rank, shuffle=False, seed=seed)
        if labels is not None and len(labels) != size:
            raise FmnistError(f"hard-example selection: {len(labels)} labels for {size} images.")
        self.size, self.keep, self.explore, self.seed = size, keep, explore, seed
        self.labels = None if labels is None else torch.as_tensor(labels).long()
        self.losses = torch.full((size,), math.inf)  # never scored: counts as hardest
        self.scored = torch.zeros(size, dtype=torch.bool)  # recorded by this process since the last merge
        self.active: torch.Tensor | None = None  # None: every image
        self.epoch = 0
        self.order = torch.arange(size)  # this process's images of this epoch, in order

    @property
    def focused_size(self) -> int:
        """Images in a focused epoch."""
        return focused_size(self.keep, self.size, self.labels)

    def __len__(self) -> int:
        return math.ceil(self._pool_size() / self.num_replicas)

    def _pool_size(self) -> int:
        return self.size if self.active is None else len(self.active)

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this before each epoch: the epoch's order depends on it, not on how often we iterate."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        pool = torch.arange(self.size) if self.active is None else self.active
        order = pool[torch.randperm(len(pool), generator=generator)]
        padded = len(self) * self.num_replicas
        if padded > len(order):  # equal lengths for every process: repeat the first images
            order = torch.cat([order, order[:padded - len(order)]])
        self.order = order[self.rank::self.num_replicas]
        return iter(self.order.tolist())

    def record(self, first: int, losses: torch.Tensor) -> None:
        """Store the losses of the images at positions ``first, first + 1, ...`` of this epoch's order."""
        images = self.order[first:first + len(losses)]
        if len(images) != len(losses):
            raise FmnistError(f"hard-example selection: a batch at position {first} has {len(losses)} losses but "
                              f"this epoch's order ends at {len(self.order)}; is the sampler shared by two loaders?")
        if self.losses.device != losses.device:  # the table follows the losses: no device sync on every step
            self.losses, self.scored = self.losses.to(losses.device), self.scored.to(losses.device)
        images = images.to(losses.device, non_blocking=True)
        self.losses[images] = losses.detach().float()
        self.scored[images] = True

    def merge(self, all_reduce: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Combine what every process recorded since the last merge (``all_reduce`` sums over the processes).

        An image two processes scored (the padding) gets the mean of their losses; every process ends with
        the same table.
        """
        if self.num_replicas > 1:
            table = torch.stack([torch.where(self.scored, self.losses, 0.0), self.scored.float()])
            table = all_reduce(table)
            seen = table[1] > 0
            self.losses[seen] = table[0][seen] / table[1][seen]
        self.scored.zero_()

    def focus(self) -> torch.Tensor:
        """From now on train on the hardest ``keep`` share (plus the ``explore`` share); returns the chosen indices."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch + 50_000)
        losses = self.losses.cpu()  # once an epoch, where the order is drawn
        if self.labels is None:
            groups = [torch.arange(self.size)]
        else:
            groups = [(self.labels == label).nonzero().flatten() for label in torch.unique(self.labels)]
        chosen = [self._hardest(group, losses, generator) for group in groups]
        self.active = torch.sort(torch.cat(chosen)).values
        return self.active

    def _hardest(self, group: torch.Tensor, losses: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The ``keep`` share of ``group`` with the highest losses, ``explore`` of it drawn from the rest."""
        count = focused_size(self.keep, len(group))
        random_count = int(self.explore * count)
        by_loss = count - random_count  # the rest holds len(group) - by_loss >= random_count images
        ranked = group[torch.argsort(losses[group], descending=True, stable=True)]
        chosen, rest = ranked[:by_loss], ranked[by_loss:]
        if random_count:
            chosen = torch.cat([chosen, rest[torch.randperm(len(rest), generator=generator)[:random_count]]])
        return chosen

    def state_dict(self) -> dict[str, Any]:
        return {"size": self.size, "losses": self.losses.cpu().clone(),
                "active": None if self.active is None else self.active.to(torch.int32)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["size"]) != self.size:
            raise FmnistError(f"the checkpoint's hard-example table covers {int(state['size'])} training images but "
                              f"this training set has {self.size}; resume with the data settings it was trained "
                              "with, or start a new run.")
        self.losses = torch.as_tensor(state["losses"], dtype=torch.float32).clone()
        active = state.get("active")
        self.active = None if active is None else torch.as_tensor(active, dtype=torch.long).clone()


def check_shares(keep: float, explore: float, owner: str) -> None:
    """One sentence for a ``keep`` outside (0, 1] or an ``explore`` outside [0, 1) (``owner`` names who got it)."""
    if not 0.0 < keep <= 1.0:
        raise FmnistError(f"{owner}: keep must be a share of the training images in (0, 1], got {keep}.")
    if not 0.0 <= explore < 1.0:
        raise FmnistError(f"{owner}: explore must be a share in [0, 1), got {explore}.")


def batches_per_epoch(images: int, batch_size: int) -> int:
    """Batches of one epoch over ``images`` (the last batch may be short, as our loaders keep it)."""
    return math.ceil(images / batch_size)


def focused_size(keep: float, size: int, labels: torch.Tensor | None = None) -> int:
    """Images a focused epoch trains on: the ``keep`` share of ``size``, or of each class when ``labels`` are given."""
    if labels is None:
        return max(1, round(keep * size))
    return sum(max(1, round(keep * int(count))) for count in torch.unique(labels, return_counts=True)[1])
