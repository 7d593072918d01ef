"""Mixup and CutMix within a batch, with soft targets, AU vectors and a warm-up.

All randomness comes from an injected :class:`torch.Generator` (timm's ``Mixup`` draws from
the global ``np.random``, which makes runs irreproducible across workers).

>>> import torch
>>> g = torch.Generator().manual_seed(0)
>>> mix = MixupCutmix(num_classes=3, mixup_alpha=0.4, generator=g)
>>> x, y, _ = mix(torch.randn(4, 1, 8, 8), torch.eye(3)[[0, 1, 2, 0]])
>>> bool(torch.allclose(y.sum(1), torch.ones(4)))
True
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import Tensor

__all__ = ["MixupCutmix", "mixup", "cutmix", "cutmix_box", "sample_beta", "group_permutation"]


def sample_beta(alpha: float, generator: torch.Generator | None = None) -> float:
    """Draw ``lam ~ Beta(alpha, alpha)`` using only ``generator``."""
    if alpha <= 0:
        raise ValueError(f"alpha is {alpha}, but must be > 0")
    # torch.distributions cannot take a generator: seed a numpy Generator from ours.
    seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def group_permutation(groups: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A partner index per sample, drawn among the samples of its own group.

    ``groups`` is ``(B,)`` integer; sample ``i``'s partner ``perm[i]`` has ``groups[perm[i]] ==
    groups[i]`` (a group of one is its own partner, so it stays unmixed).

    >>> perm = group_permutation(torch.tensor([0, 1, 0, 1, 0]), torch.Generator().manual_seed(0))
    >>> torch.tensor([0, 1, 0, 1, 0])[perm].tolist()
    [0, 1, 0, 1, 0]
    """
    groups = groups.detach().to("cpu").long()
    perm = torch.arange(len(groups))
    for g in torch.unique(groups).tolist():
        idx = torch.nonzero(groups == g, as_tuple=True)[0]
        perm[idx] = idx[torch.randperm(len(idx), generator=generator)]
    return perm


def mixup(x: Tensor, y: Tensor, lam: float, perm: Tensor) -> tuple[Tensor, Tensor]:
    """Blend each sample with ``x[perm]``: ``lam * x + (1 - lam) * x[perm]``; same for ``y``.

    Returns new tensors; the inputs are not modified.
    """
    perm = perm.to(x.device)
    x_mixed = x * lam + x[perm] * (1.0 - lam)
    y_mixed = y * lam + y[perm.to(y.device)] * (1.0 - lam)
    return x_mixed, y_mixed


def cutmix_box(
    lam: float, height: int, width: int, generator: torch.Generator | None = None
) -> tuple[int, int, int, int]:
    """A box ``(y0, y1, x0, x1)`` covering about ``1 - lam`` of the image, centred uniformly.

    The box is clipped at the borders, so its area can be smaller than asked; use the
    area-corrected ``lam`` that :func:`cutmix` returns.
    """
    ratio = math.sqrt(max(0.0, 1.0 - lam))
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy = int(torch.randint(0, height, (1,), generator=generator).item())
    cx = int(torch.randint(0, width, (1,), generator=generator).item())
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return y0, y1, x0, x1


def cutmix(
    x: Tensor,
    y: Tensor,
    lam: float,
    perm: Tensor,
    generator: torch.Generator | None = None,
    box: tuple[int, int, int, int] | None = None,
) -> tuple[Tensor, Tensor, float]:
    """Paste a box of ``x[perm]`` into each image; mix ``y`` by the kept area.

    Args:
        x: images ``(B, C, H, W)``.
        y: soft targets ``(B, K)``.
        lam: the asked-for fraction of each image to keep.
        perm: partner index per sample.
        generator: draws the box centre (when ``box`` is None).
        box: ``(y0, y1, x0, x1)``; drawn with :func:`cutmix_box` when None.

    Returns:
        ``(x_mixed, y_mixed, lam_kept)`` where ``lam_kept`` is the exact fraction of pixels
        kept from the original image.
    """
    height, width = x.shape[-2:]
    y0, y1, x0, x1 = box if box is not None else cutmix_box(lam, height, width, generator)
    lam_kept = 1.0 - (y1 - y0) * (x1 - x0) / float(height * width)
    perm = perm.to(x.device)
    x_mixed = x.clone()
    x_mixed[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
    y_mixed = y * lam_kept + y[perm.to(y.device)] * (1.0 - lam_kept)
    return x_mixed, y_mixed, lam_kept


class MixupCutmix:
    """Mix each batch with a permutation of itself by mixup or CutMix.

    Args:
        num_classes: width of the soft targets.
        mixup_alpha: Beta parameter for mixup; 0 disables mixup.
        cutmix_alpha: Beta parameter for CutMix; 0 disables CutMix.
        prob: probability that a batch is mixed (after warm-up).
        switch_prob: probability of CutMix rather than mixup when both are enabled.
        warmup_epochs: the mixing probability ramps linearly from 0 at epoch 0 to ``prob``
            at ``warmup_epochs`` (fractional epochs allowed).
        generator: the only source of randomness; a fresh unseeded one when None.
        au_mode: how AU vectors of the two samples combine: ``"weighted"`` (default) mixes
            them with the same ``lam`` as the emotion targets (soft BCE targets);
            ``"max"`` takes their union, as an AU visible in either face may be present.

    After a mixed call, :attr:`last_perm` holds the partner index per sample (None when the
    batch was not mixed); :meth:`mix_mask` combines a known-AU row mask with it.
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        warmup_epochs: float = 0,
        generator: torch.Generator | None = None,
        au_mode: Literal["weighted", "max"] = "weighted",
    ) -> None:
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError(f"alphas must be >= 0, got mixup_alpha={mixup_alpha}, cutmix_alpha={cutmix_alpha}")
        if not 0.0 <= prob <= 1.0 or not 0.0 <= switch_prob <= 1.0:
            raise ValueError(f"prob={prob} and switch_prob={switch_prob} must be in [0, 1]")
        if au_mode not in ("weighted", "max"):
            raise ValueError(f"au_mode is {au_mode!r}, but must be 'weighted' or 'max'")
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs is {warmup_epochs}, but must be >= 0")
        self.num_classes = num_classes
        self.mixup_alpha = float(mixup_alpha)
        self.cutmix_alpha = float(cutmix_alpha)
        self.prob = float(prob)
        self.switch_prob = float(switch_prob)
        self.warmup_epochs = float(warmup_epochs)
        self.generator = generator if generator is not None else torch.Generator()
        self.au_mode = au_mode
        self.last_perm: Tensor | None = None
        self.last_lam: float = 1.0

    @property
    def enabled(self) -> bool:
        """Whether any mixing can happen."""
        return self.prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)

    def probability(self, epoch: float) -> float:
        """The mixing probability at ``epoch`` (linear warm-up to ``prob``)."""
        if self.warmup_epochs <= 0:
            return self.prob
        return self.prob * min(1.0, max(0.0, epoch / self.warmup_epochs))

    def _uniform(self) -> float:
        return float(torch.rand((), generator=self.generator).item())

    def __call__(
        self,
        x: Tensor,
        target: Tensor,
        aus: Tensor | None = None,
        epoch: float = 0,
        groups: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Mix a batch: images ``(B, C, H, W)``, soft targets ``(B, K)``, AUs ``(B, 18)``.

        ``groups`` (``(B,)`` integers, optional) keeps every partner inside its sample's group
        (:func:`group_permutation`); distillation uses it so that a mixed image never holds a
        row the teacher model scoring it trained on.

        Returns ``(x, target, aus)``, unchanged when the batch is not mixed. Targets stay
        distributions (rows sum to one); AUs become float.
        """
        self.last_perm, self.last_lam = None, 1.0
        if target.ndim != 2 or target.shape[1] != self.num_classes:
            raise ValueError(f"target must be soft labels (B, {self.num_classes}), got shape {tuple(target.shape)}")
        if not self.enabled or x.shape[0] < 2:
            return x, target, aus
        if self._uniform() >= self.probability(epoch):
            return x, target, aus
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha <= 0 or self._uniform() < self.switch_prob)
        if groups is None:
            perm = torch.randperm(x.shape[0], generator=self.generator)
        else:
            if groups.shape != (x.shape[0],):
                raise ValueError(f"groups must be (B,) = ({x.shape[0]},), got shape {tuple(groups.shape)}")
            perm = group_permutation(groups, self.generator)
        if use_cutmix:
            lam = sample_beta(self.cutmix_alpha, self.generator)
            x, target, lam = cutmix(x, target, lam, perm, self.generator)
        else:
            lam = sample_beta(self.mixup_alpha, self.generator)
            x, target = mixup(x, target, lam, perm)
        if aus is not None:
            a = aus.float()
            p = perm.to(a.device)
            aus = torch.maximum(a, a[p]) if self.au_mode == "max" else a * lam + a[p] * (1.0 - lam)
        self.last_perm, self.last_lam = perm, lam
        return x, target, aus

    def mix_mask(self, mask: Tensor) -> Tensor:
        """Rows whose mixed AU vector is known: ``mask & mask[last_perm]`` (``mask`` if unmixed)."""
        if self.last_perm is None:
            return mask
        return mask & mask[self.last_perm.to(mask.device)]
