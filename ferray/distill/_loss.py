"""The distillation loss: the teacher's softened distribution plus the hard labels.

``loss = alpha * T^2 * KL(teacher_T || softmax(student / T)) + (1 - alpha) * CE(student, hard)``

The teacher here is an ensemble's *probabilities*, not logits; at temperature ``T`` they
become ``p^(1/T)`` renormalised (:func:`soften`), which is ``softmax(log p / T)``: the same
as dividing teacher logits by ``T``. The ``T^2`` factor keeps the soft term's gradients
on the scale of the hard term's whatever ``T`` is (Hinton et al., 2015).

>>> import torch
>>> logits = torch.zeros(2, 3)
>>> teacher = torch.full((2, 3), 1 / 3)
>>> hard = torch.eye(3)[[0, 1]]
>>> float(distillation_loss(logits, teacher, hard, alpha=1.0, temperature=4.0))
0.0
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["soften", "distillation_loss", "DistillationLoss"]


def soften(probs: np.ndarray | Tensor, temperature: float) -> np.ndarray | Tensor:
    """``probs ** (1 / T)`` renormalised per row: softer for ``T > 1``, sharper for ``T < 1``.

    >>> soften(np.array([[0.8, 0.2]]), 1.0).round(3).tolist()
    [[0.8, 0.2]]
    """
    if temperature <= 0:
        raise ValueError(f"temperature is {temperature}, but must be > 0")
    if isinstance(probs, Tensor):
        logp = torch.log(probs.float().clamp_min(1e-12)) / temperature
        return torch.softmax(logp, dim=-1)
    logp = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None)) / temperature
    logp -= logp.max(axis=-1, keepdims=True)
    out = np.exp(logp)
    return (out / out.sum(axis=-1, keepdims=True)).astype(np.float32)


def distillation_loss(logits: Tensor, teacher: Tensor, hard: Tensor, *, alpha: float, temperature: float) -> Tensor:
    """The batch's distillation loss (see the module docstring).

    Args:
        logits: the student's logits ``(B, C)``.
        teacher: the teacher's distribution *already at* ``temperature`` ``(B, C)``
            (:func:`soften`); rows sum to one.
        hard: hard-label targets ``(B, C)``: one-hot rows, mixed rows after mixup, or zero
            rows for images without a label (transfer images), which the hard term skips.
        alpha: weight of the soft term, in [0, 1].
        temperature: ``T`` > 0.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha is {alpha}, but must be in [0, 1]")
    if temperature <= 0:
        raise ValueError(f"temperature is {temperature}, but must be > 0")
    logits = logits.float()
    total = logits.new_zeros(())
    if alpha > 0:
        teacher = teacher.float()
        log_student = F.log_softmax(logits / temperature, dim=-1)
        # KL(teacher || student), summed over classes, mean over the batch; 0 * log 0 = 0.
        kl = (
            torch.where(
                teacher > 0, teacher * (torch.log(teacher.clamp_min(1e-12)) - log_student), torch.zeros_like(teacher)
            )
            .sum(dim=-1)
            .mean()
        )
        total = total + alpha * temperature**2 * kl
    if alpha < 1:
        hard = hard.float()
        weight = hard.sum()
        ce = -(hard * F.log_softmax(logits, dim=-1)).sum() / weight.clamp_min(1e-12)
        total = total + (1.0 - alpha) * ce
    return total


class DistillationLoss(nn.Module):
    """:func:`distillation_loss` on packed targets ``(B, 2C)``: ``[teacher_T | hard]``.

    Packed so one target tensor travels through the data loader and
    :class:`~ferray.training.losses.FERLoss` (as its emotion loss) unchanged.
    """

    def __init__(self, alpha: float, temperature: float) -> None:
        super().__init__()
        distillation_loss(
            torch.zeros(1, 2), torch.full((1, 2), 0.5), torch.zeros(1, 2), alpha=alpha, temperature=temperature
        )  # checks the arguments once, here
        self.alpha, self.temperature = float(alpha), float(temperature)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        c = logits.shape[-1]
        if target.shape[-1] != 2 * c:
            raise ValueError(f"packed targets must be (B, {2 * c}) = [teacher | hard], got {tuple(target.shape)}")
        return distillation_loss(logits, target[:, :c], target[:, c:], alpha=self.alpha, temperature=self.temperature)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, temperature={self.temperature}"
