"""Muon for the convolution filters, Nesterov SGD for everything else, as one optimizer (``model.optimizer: muon``).

Why: airbench (KellerJordan/cifar10-airbench, ``airbench94_muon.py``) reaches the same accuracy in fewer steps when
each convolution's update is orthogonalised (Muon: "MomentUm Orthogonalized by Newton-Schulz") instead of taken
as is, while biases, BatchNorm parameters and the classifier head keep plain momentum SGD. One optimizer object
(rather than two) keeps Lightning's automatic optimisation, the schedulers and checkpoint resume unchanged: each
parameter group says whether it is a Muon group.

The orthogonalisation is the quintic Newton-Schulz iteration of Muon's authors, written here for the CPU: it
runs in float32 (bf16 matmuls are emulated on CPUs without native bf16), on each filter bank viewed as a matrix
``[out_channels, in_channels * kh * kw]``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalise(update: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """Approximately ``U V^T`` of ``update``'s SVD (singular values pushed towards 1), same shape as ``update``."""
    matrix = update.reshape(len(update), -1).float()
    x = matrix / (matrix.norm() + eps)  # top singular value <= 1
    transposed = x.size(0) > x.size(1)
    if transposed:
        x = x.T
    a, b, c = NS_COEFFICIENTS
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    if transposed:
        x = x.T
    return x.reshape(update.shape).to(update.dtype)


class MuonSGD(torch.optim.Optimizer):
    """Parameter groups with ``muon=True`` take orthogonalised Nesterov steps; the others Nesterov SGD.

    Each group has its own ``lr``, ``momentum`` and ``weight_decay`` (decoupled for Muon groups, L2 for SGD ones,
    as torch's SGD does), so schedulers scale them as usual.
    """

    def __init__(self, params: Iterable[dict[str, Any]], lr: float = 0.01, momentum: float = 0.9,
                 weight_decay: float = 0.0, ns_steps: int = 5) -> None:
        if lr <= 0 or not 0 <= momentum < 1 or weight_decay < 0 or ns_steps < 1:
            raise ValueError(f"MuonSGD needs lr > 0, 0 <= momentum < 1, weight_decay >= 0 and ns_steps >= 1; got "
                             f"{lr}, {momentum}, {weight_decay}, {ns_steps}.")
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "muon": False,
                                  "ns_steps": ns_steps})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if decay and not group["muon"]:
                    grad = grad.add(p, alpha=decay)
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = grad.clone()
                else:
                    buf.mul_(momentum).add_(grad)
                step = grad.add(buf, alpha=momentum)  # Nesterov
                if group["muon"]:
                    if decay:
                        p.mul_(1 - lr * decay)
                    step = orthogonalise(step, group["ns_steps"])
                    # Muon's shape scaling: the same RMS step size for wide and tall filter banks.
                    step = step * max(1.0, step.size(0) / step[0].numel()) ** 0.5
                p.add_(step, alpha=-lr)
        return loss


def split_for_muon(named: Iterable[tuple[str, torch.nn.Parameter]]) -> tuple[list, list]:
    """``(filters, others)``: trainable convolution filters (4-D) take Muon; biases, norms and heads do not."""
    filters, others = [], []
    for _, p in named:
        if not p.requires_grad:
            continue
        (filters if p.dim() == 4 else others).append(p)
    return filters, others
