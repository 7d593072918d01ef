"""Emotion losses (a registry, picked by ``loss.name``) and the combined emotion + AU loss.

Every emotion loss takes logits ``(B, C)`` and *soft* targets ``(B, C)`` whose rows sum to
one: one-hot rows for hard labels, mixed rows after mixup/cutmix, vote distributions for
FER+. On one-hot targets ``ce``/``soft_ce`` equal :func:`torch.nn.functional.cross_entropy`.

>>> import torch
>>> loss = FocalLoss(gamma=2.0)
>>> value = loss(torch.zeros(4, 7), torch.tensor([0, 1, 2, 3]))
>>> round(float(value), 4)  # (1 - 1/7)^2 * log(7)
1.4296
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ferray.errors import ConfigError
from ferray.training.config import LossConfig
from ferray.training.registry import LOSS_REGISTRY

__all__ = [
    "LOSSES",
    "register_loss",
    "build_loss",
    "soft_cross_entropy",
    "SoftCrossEntropy",
    "FocalLoss",
    "AULoss",
    "FERLoss",
    "balanced_alpha",
    "au_pos_weight",
]

#: An emotion-loss factory: ``(cfg, num_classes, class_counts) -> module(logits, soft_target)``.
LossFactory = Callable[[LossConfig, int, np.ndarray], nn.Module]
#: Registered emotion losses by name (the registry configs are validated against).
LOSSES = LOSS_REGISTRY


def register_loss(name: str) -> Callable[[LossFactory], LossFactory]:
    """Register an emotion-loss factory under ``name`` (a decorator); ``loss.name: <name>`` is
    then valid in any config or search spec validated afterwards."""
    return LOSS_REGISTRY.register(name)


def soft_cross_entropy(logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """Mean over the batch of ``-sum_c w_c t_c log softmax(logits)_c``."""
    logp = F.log_softmax(logits.float(), dim=-1)
    terms = -target.float() * logp
    if weight is not None:
        terms = terms * weight
    return terms.sum(dim=-1).mean()


class SoftCrossEntropy(nn.Module):
    """Cross-entropy against soft targets, optionally smoothed: ``t (1 - eps) + eps / C``."""

    def __init__(self, smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= smoothing < 1.0:
            raise ConfigError(f"label smoothing is {smoothing}, but must be in [0, 1)")
        self.smoothing = smoothing

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if self.smoothing > 0:
            target = target * (1.0 - self.smoothing) + self.smoothing / logits.shape[-1]
        return soft_cross_entropy(logits, target)


class FocalLoss(nn.Module):
    """Focal loss ``-sum_c alpha_c t_c (1 - p_c)^gamma log p_c``, averaged over the batch.

    Accepts hard integer targets ``(B,)`` or soft targets ``(B, C)``; with ``gamma=0`` and
    no ``alpha`` it is cross-entropy. ``alpha`` is an optional per-class weight ``(C,)``
    (see :func:`balanced_alpha`).
    """

    def __init__(self, gamma: float = 2.0, alpha: Tensor | None = None) -> None:
        super().__init__()
        if gamma < 0:
            raise ConfigError(f"focal gamma is {gamma}, but must be >= 0")
        self.gamma = float(gamma)
        self.register_buffer("alpha", None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32))

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        logits = logits.float()
        if target.ndim == 1:
            target = F.one_hot(target.long(), logits.shape[-1]).float()
        logp = F.log_softmax(logits, dim=-1)
        terms = -target.float() * logp
        if self.gamma > 0:
            terms = terms * (1.0 - logp.exp()).clamp_min(0.0).pow(self.gamma)
        if self.alpha is not None:
            terms = terms * self.alpha
        return terms.sum(dim=-1).mean()


def balanced_alpha(class_counts: np.ndarray) -> np.ndarray:
    """Per-class weights proportional to inverse frequency, normalised to mean 1.

    Classes with no examples get the weight of the rarest seen class.
    """
    counts = np.asarray(class_counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0 or (counts < 0).any():
        raise ConfigError(f"class_counts must be a non-empty 1-d array of counts, got {class_counts!r}")
    seen = counts[counts > 0]
    floor = seen.min() if seen.size else 1.0
    inv = 1.0 / np.where(counts > 0, counts, floor)
    return (inv / inv.mean()).astype(np.float32)


@register_loss("ce")
def _ce(cfg: LossConfig, num_classes: int, class_counts: np.ndarray) -> nn.Module:
    return SoftCrossEntropy()


@register_loss("soft_ce")
def _soft_ce(cfg: LossConfig, num_classes: int, class_counts: np.ndarray) -> nn.Module:
    return SoftCrossEntropy()


@register_loss("label_smoothing")
def _label_smoothing(cfg: LossConfig, num_classes: int, class_counts: np.ndarray) -> nn.Module:
    return SoftCrossEntropy(smoothing=cfg.label_smoothing)


@register_loss("focal")
def _focal(cfg: LossConfig, num_classes: int, class_counts: np.ndarray) -> nn.Module:
    alpha = None
    if cfg.focal_alpha == "balanced":
        counts = np.asarray(class_counts)
        if counts.shape != (num_classes,):
            raise ConfigError(f"class_counts has shape {counts.shape}, but the model has {num_classes} classes")
        alpha = torch.from_numpy(balanced_alpha(counts))
    return FocalLoss(gamma=cfg.focal_gamma, alpha=alpha)


def au_pos_weight(au_pos_rate: np.ndarray, low: float = 1.0, high: float = 50.0) -> np.ndarray:
    """BCE positive weights ``(1 - rate) / rate`` clipped to ``[low, high]`` (rate 0 -> ``high``)."""
    rate = np.asarray(au_pos_rate, dtype=np.float64)
    with np.errstate(divide="ignore"):
        weight = np.where(rate > 0, (1.0 - rate) / np.maximum(rate, 1e-12), high)
    return np.clip(weight, low, high).astype(np.float32)


class AULoss(nn.Module):
    """Masked BCE-with-logits over AU vectors; rows with unknown AUs are ignored.

    The mean runs over known rows and all AUs; with no known rows the loss is a zero that
    still depends on the logits, so every AU-head parameter gets a (zero) gradient and DDP
    sees no unused parameters.
    """

    def __init__(self, pos_weight: Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("pos_weight", None if pos_weight is None else torch.as_tensor(pos_weight).float())

    def forward(self, au_logits: Tensor, aus: Tensor, mask: Tensor | None = None) -> Tensor:
        au_logits = au_logits.float()
        per = F.binary_cross_entropy_with_logits(
            au_logits, aus.to(au_logits.dtype), pos_weight=self.pos_weight, reduction="none"
        )
        if mask is None:
            return per.mean()
        m = mask.to(per.dtype).reshape(-1, 1)
        return (per * m).sum() / (m.sum().clamp_min(1.0) * per.shape[1])


class FERLoss(nn.Module):
    """Emotion loss plus ``au_weight`` times the AU loss (when the model predicts AUs).

    ``forward(outputs, target, aus=None, au_mask=None)`` takes the model's output dict, soft
    emotion targets ``(B, C)``, AU vectors ``(B, 18)`` (0/1 or mixed soft values) and a
    ``(B,)`` bool mask of rows whose AUs are known; it returns the scalar loss and a dict
    ``{"emotion": float, "au": float}`` of detached parts (``au`` is 0.0 without AUs).
    """

    def __init__(self, emotion: nn.Module, au: AULoss | None = None, au_weight: float = 1.0) -> None:
        super().__init__()
        self.emotion = emotion
        self.au = au
        self.au_weight = float(au_weight)

    def forward(
        self,
        outputs: dict[str, Tensor],
        target: Tensor,
        aus: Tensor | None = None,
        au_mask: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, float]]:
        emotion = self.emotion(outputs["logits"], target)
        total = emotion
        au_value = 0.0
        au_logits = outputs.get("au_logits")
        if au_logits is not None:
            if aus is None or self.au is None or self.au_weight == 0.0:
                # Keep the AU head in the graph (zero gradient) so DDP finds no unused parameters.
                au_loss = au_logits.float().sum() * 0.0
            else:
                au_loss = self.au(au_logits, aus, au_mask)
                au_value = float(au_loss.detach())
            total = total + self.au_weight * au_loss
        return total, {"emotion": float(emotion.detach()), "au": au_value}


def build_loss(
    cfg: LossConfig,
    num_classes: int,
    class_counts: np.ndarray,
    au_pos_rate: np.ndarray | None,
    au_weight: float,
) -> FERLoss:
    """Build the training loss named by ``cfg.name``.

    Args:
        cfg: the loss section of the training config.
        num_classes: emotion classes.
        class_counts: training examples per class (focal's ``balanced`` alpha).
        au_pos_rate: fraction of positive rows per AU among rows with known AUs, or None
            (no AU data, or no positive weighting wanted).
        au_weight: weight of the AU loss (``ModelConfig.au_weight``).
    """
    try:
        factory = LOSS_REGISTRY.factory(cfg.name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    emotion = factory(cfg, num_classes, np.asarray(class_counts))
    pos_weight = None
    if cfg.au_pos_weight and au_pos_rate is not None:
        pos_weight = torch.from_numpy(au_pos_weight(au_pos_rate))
    return FERLoss(emotion, AULoss(pos_weight), au_weight=au_weight)
