"""Prediction with test-time augmentation: probabilities averaged over views.

Views: the plain image (always), ``"hflip"`` (the mirror image of every view) and ``"multicrop"``
(four corner crops and a centre crop of 90% of the side, each resized back by the
evaluation transform). Probabilities (softmax for emotions, sigmoid for AUs) are averaged
over all views.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ferray.training.augment import ImageTransform, apply_batch

__all__ = ["TTA_VIEWS", "predict_proba", "crops"]

#: Names accepted in ``tta`` besides the always-present identity view.
TTA_VIEWS: tuple[str, ...] = ("identity", "hflip", "multicrop")
_CROP_FRACTION = 0.9


def crops(images: np.ndarray, fraction: float = _CROP_FRACTION) -> list[np.ndarray]:
    """Top-left, top-right, bottom-left, bottom-right and centre crops ``(N, h, w, C)`` (views)."""
    _, height, width, _ = images.shape
    h, w = max(1, int(round(height * fraction))), max(1, int(round(width * fraction)))
    cy, cx = (height - h) // 2, (width - w) // 2
    corners = [(0, 0), (0, width - w), (height - h, 0), (height - h, width - w), (cy, cx)]
    return [images[:, y : y + h, x : x + w] for y, x in corners]


@torch.inference_mode()
def predict_proba(
    model: nn.Module,
    images: np.ndarray,
    eval_transform: ImageTransform,
    tta: Sequence[str] = (),
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    amp_dtype: torch.dtype | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Class probabilities ``(N, C)`` and AU probabilities ``(N, 18)`` (None without an AU head).

    Args:
        model: a :class:`~ferray.training.models.FERModel` (any module returning a dict with
            ``"logits"`` and optionally ``"au_logits"``); it is put in eval mode.
        images: ``uint8 (N, H, W, C)``.
        eval_transform: e.g. :func:`~ferray.training.augment.build_eval_transform`.
        tta: extra views, any of :data:`TTA_VIEWS`; ``[]`` predicts the plain image only.
        batch_size: images per forward pass (per view).
        device: where to run the model.
        amp_dtype: autocast dtype (``torch.bfloat16``/``torch.float16``) or None for fp32.
    """
    unknown = [v for v in tta if v not in TTA_VIEWS]
    if unknown:
        raise ValueError(f"unknown TTA view(s) {unknown}; valid views: {', '.join(TTA_VIEWS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size is {batch_size}, but must be >= 1")
    model.eval()
    device = torch.device(device)
    flip, multicrop = "hflip" in tta, "multicrop" in tta
    probs_out: list[np.ndarray] = []
    aus_out: list[np.ndarray] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        views = [apply_batch(eval_transform, chunk)]
        if multicrop:
            views += [apply_batch(eval_transform, c) for c in crops(chunk)]
        probs_sum, aus_sum, n_views = None, None, 0
        for view in views:
            x = torch.from_numpy(view).to(device, non_blocking=True)
            batches = [x, x.flip(-1)] if flip else [x]
            for xb in batches:
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    out = model(xb)
                p = out["logits"].float().softmax(dim=-1)
                probs_sum = p if probs_sum is None else probs_sum + p
                if out.get("au_logits") is not None:
                    a = out["au_logits"].float().sigmoid()
                    aus_sum = a if aus_sum is None else aus_sum + a
                n_views += 1
        probs_out.append((probs_sum / n_views).cpu().numpy())
        if aus_sum is not None:
            aus_out.append((aus_sum / n_views).cpu().numpy())
    if not probs_out:
        raise ValueError("images is empty")
    probs = np.concatenate(probs_out).astype(np.float32, copy=False)
    au_probs = np.concatenate(aus_out).astype(np.float32, copy=False) if aus_out else None
    return probs, au_probs
