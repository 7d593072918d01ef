"""The training augmentation on whole image batches, on the batch's own device (CPU or CUDA).

:class:`BatchAugment` maps a ``uint8 (N, C, H, W)`` tensor to ``float32 (N, C, size, size)``
normalised like :func:`~ferray.training.augment.to_chw_float` (mean 0.5, std 0.5, values in
[-1, 1]). It draws the augmentations of :func:`~ferray.training.augment.build_train_transform`
with the same probabilities and ranges as functions of ``strength``, each sample on its own:

* horizontal flip, p = 0.5;
* affine (x and y scale each in 1 ± 0.15 s, x and y shift each in ± 0.08 s of the side,
  truncated to whole pixels, rotation in ± 15 s degrees, reflected border), p = 0.3 + 0.5 s,
  through ``affine_grid`` / ``grid_sample``;
* brightness / contrast (``x * (1 + c) + 255 b``, b and c each in ± 0.3 s, clipped to
  [0, 255]: albumentations' ``RandomBrightnessContrast`` with ``brightness_by_max``),
  p = 0.3 + 0.5 s;
* with p = 0.3 s one of, equally likely: a Gaussian blur (kernel 3 with p = 1/3, else 5;
  sigma in [0.5, 3]), a motion blur (a line of length 3 or 5 through the centre at a
  uniform angle, where albumentations also biases and shifts the line), Gaussian noise
  (per pixel and channel, std in [0.02, 0.02 + 0.08 s] of 255, clipped);
* coarse dropout: 1 to ``max(1, round(1 + 2 s))`` holes, each side in
  [0.05, 0.05 + 0.2 s] of the image side (truncated to pixels), filled with 0, p = 0.5 s.

Values stay float between the steps (albumentations rounds to ``uint8`` after each), so the
two paths agree in distribution, not pixel for pixel. Every draw comes from the
``torch.Generator`` passed in, in a fixed order, so a seed gives the same batch on one
device. ``strength=0`` is resize + normalise only, equal to the evaluation transform.

>>> import torch
>>> aug = BatchAugment(32, channels=1, strength=0.5)
>>> x = torch.zeros(4, 1, 48, 48, dtype=torch.uint8)
>>> aug(x, torch.Generator().manual_seed(0)).shape
torch.Size([4, 1, 32, 32])
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["BatchAugment", "normalise"]

_SCALE = float(np.float32(1.0 / 127.5))
#: Side of the per-sample blur kernels (the largest of both blurs); smaller kernels are zero-padded.
_K = 5


def normalise(x: torch.Tensor) -> torch.Tensor:
    """Pixel values in [0, 255] -> ``float32`` in [-1, 1], as :func:`~ferray.training.augment.to_chw_float`."""
    return x.to(torch.float32) * _SCALE - 1.0


class BatchAugment:
    """A callable ``(uint8 (N, C, H, W), generator) -> float32 (N, C, size, size)``: resize, augment, normalise.

    Args:
        size: output side; inputs of another size are resized first (bilinear, antialiased
            when shrinking), as the per-image transform resizes before augmenting.
        channels: the channel count inputs must have (1 or 3).
        strength: in [0, 1]; scales probabilities and magnitudes as in
            :func:`~ferray.training.augment.build_train_transform`.
    """

    def __init__(self, size: int, channels: int, strength: float) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels is {channels}, but must be 1 or 3")
        if size < 1:
            raise ValueError(f"size is {size}, but must be >= 1")
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength is {strength}, but must be in [0, 1]")
        self.size, self.channels, self.strength = size, channels, float(strength)
        self.max_holes = max(1, round(1 + 2 * self.strength))

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != self.channels or images.dtype != torch.uint8:
            raise ValueError(
                f"images must be uint8 (N, {self.channels}, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        x = images.to(torch.float32)
        if x.shape[-2:] != (self.size, self.size):
            shrink = x.shape[-2] > self.size
            x = F.interpolate(x, (self.size, self.size), mode="bilinear", align_corners=False, antialias=shrink)
            x = x.clamp_(0.0, 255.0)
        if self.strength == 0.0 or len(x) == 0:
            return normalise(x)
        draw = _Draws(len(x), x.device, generator)
        s = self.strength
        x = self._flip(x, draw)
        x = self._affine(x, draw, s)
        x = self._brightness_contrast(x, draw, s)
        x = self._blur_or_noise(x, draw, s)
        x = self._dropout(x, draw, s)
        return normalise(x)

    # -- the steps, in build_train_transform's order ------------------------------------
    @staticmethod
    def _flip(x: torch.Tensor, draw: _Draws) -> torch.Tensor:
        return torch.where(_per_sample(draw.coin(0.5)), x.flip(-1), x)

    @staticmethod
    def _affine(x: torch.Tensor, draw: _Draws, s: float) -> torch.Tensor:
        on = draw.coin(0.3 + 0.5 * s)
        sx, sy = draw.uniform(1.0 - 0.15 * s, 1.0 + 0.15 * s), draw.uniform(1.0 - 0.15 * s, 1.0 + 0.15 * s)
        h, w = x.shape[-2:]
        tx = torch.trunc(draw.uniform(-0.08 * s, 0.08 * s) * w)  # albumentations: int(fraction * side)
        ty = torch.trunc(draw.uniform(-0.08 * s, 0.08 * s) * h)
        angle = torch.deg2rad(draw.uniform(-15.0 * s, 15.0 * s))
        # The forward map (about the image centre) is p_out = c + t + R S (p_in - c); grid_sample
        # wants its inverse in coordinates normalised so that -1 and 1 are the corner pixels'
        # centres (align_corners=True, where "reflection" is OpenCV's BORDER_REFLECT_101).
        cos, sin = torch.cos(angle), torch.sin(angle)
        inv = torch.stack([torch.stack([cos / sx, sin / sx], -1), torch.stack([-sin / sy, cos / sy], -1)], -2)
        half = torch.tensor([(w - 1) / 2, (h - 1) / 2], device=x.device, dtype=x.dtype).clamp_(min=0.5)
        linear = inv * half[None, None, :] / half[None, :, None]
        shift = -(inv @ torch.stack([tx, ty], -1)[..., None])[..., 0] / half
        theta = torch.cat([linear, shift[..., None]], -1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=True)
        warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=True)
        return torch.where(_per_sample(on), warped, x)

    @staticmethod
    def _brightness_contrast(x: torch.Tensor, draw: _Draws, s: float) -> torch.Tensor:
        on = draw.coin(0.3 + 0.5 * s)
        alpha = 1.0 + draw.uniform(-0.3 * s, 0.3 * s)
        beta = draw.uniform(-0.3 * s, 0.3 * s) * 255.0
        alpha = torch.where(on, alpha, torch.ones_like(alpha))
        beta = torch.where(on, beta, torch.zeros_like(beta))
        return (x * _per_sample(alpha) + _per_sample(beta)).clamp_(0.0, 255.0)

    @staticmethod
    def _blur_or_noise(x: torch.Tensor, draw: _Draws, s: float) -> torch.Tensor:
        on = draw.coin(0.3 * s)
        which = draw.integers(0, 3)  # 0 Gaussian blur, 1 motion blur, 2 noise: OneOf's equal weights
        gaussian, motion, noisy = on & (which == 0), on & (which == 1), on & (which == 2)
        # Gaussian blur: randint(3, 5) with an even size rounded up, so 3 with p = 1/3, else 5.
        g_radius = torch.where(draw.uniform(0.0, 1.0) < 1 / 3, 1.0, 2.0)
        sigma = draw.uniform(0.5, 3.0)
        # Motion blur: an odd length from {3, 5}, a line through the centre at a uniform angle.
        m_radius = torch.where(draw.uniform(0.0, 1.0) < 0.5, 1.0, 2.0)
        theta = torch.deg2rad(draw.uniform(0.0, 360.0))
        sigma_noise = draw.uniform(0.02, 0.02 + 0.08 * s) * 255.0
        noise = draw.normal(x.shape)

        offsets = torch.arange(_K, device=x.device, dtype=x.dtype) - _K // 2
        taps = torch.exp(-0.5 * (offsets[None] / sigma[:, None]) ** 2) * (offsets.abs()[None] <= g_radius[:, None])
        taps = taps / taps.sum(1, keepdim=True)
        gauss = taps[:, :, None] * taps[:, None, :]
        oy, ox = torch.meshgrid(offsets, offsets, indexing="ij")
        dx, dy = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
        along = (ox * dx + oy * dy).clamp(-m_radius[:, None, None], m_radius[:, None, None])
        dist = torch.hypot(ox - along * dx, oy - along * dy)
        line = (1.0 - dist).clamp_(min=0.0)
        line = line / line.sum((1, 2), keepdim=True)
        kernel = torch.where(gaussian[:, None, None], gauss, line)

        n, c, h, w = x.shape
        blurred = _depthwise(x, kernel) if h > _K // 2 and w > _K // 2 else x
        x = torch.where(_per_sample(gaussian | motion), blurred, x)
        return torch.where(_per_sample(noisy), (x + noise * _per_sample(sigma_noise)).clamp_(0.0, 255.0), x)

    def _dropout(self, x: torch.Tensor, draw: _Draws, s: float) -> torch.Tensor:
        on = draw.coin(0.5 * s)
        n, _, h, w = x.shape
        j = self.max_holes
        count = draw.integers(1, j + 1)
        hole_h = torch.trunc(h * draw.uniform(0.05, 0.05 + 0.2 * s, (n, j)))
        hole_w = torch.trunc(w * draw.uniform(0.05, 0.05 + 0.2 * s, (n, j)))
        top = torch.floor(draw.uniform(0.0, 1.0, (n, j)) * (h - hole_h + 1))
        left = torch.floor(draw.uniform(0.0, 1.0, (n, j)) * (w - hole_w + 1))
        used = (torch.arange(j, device=x.device)[None] < count[:, None]) & on[:, None]
        rows = torch.arange(h, device=x.device, dtype=x.dtype)[None, None]
        cols = torch.arange(w, device=x.device, dtype=x.dtype)[None, None]
        in_rows = (rows >= top[..., None]) & (rows < (top + hole_h)[..., None])
        in_cols = (cols >= left[..., None]) & (cols < (left + hole_w)[..., None])
        holes = (in_rows[:, :, :, None] & in_cols[:, :, None, :] & used[:, :, None, None]).any(1)
        return x.masked_fill(holes[:, None], 0.0)

    def __repr__(self) -> str:
        return f"BatchAugment(size={self.size}, channels={self.channels}, strength={self.strength})"


class _Draws:
    """Per-sample random draws of one batch from one generator, on the batch's device."""

    def __init__(self, n: int, device: torch.device, generator: torch.Generator) -> None:
        if generator.device.type != device.type:
            raise ValueError(f"the generator is on {generator.device} but the images are on {device}")
        self.n, self.device, self.generator = n, device, generator

    def uniform(self, low: float, high: float, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        u = torch.rand(shape or (self.n,), generator=self.generator, device=self.device)
        return low + (high - low) * u

    def coin(self, p: float) -> torch.Tensor:
        return self.uniform(0.0, 1.0) < p

    def integers(self, low: int, high: int) -> torch.Tensor:
        """Integers in ``[low, high)``, one per sample."""
        return torch.randint(low, high, (self.n,), generator=self.generator, device=self.device)

    def normal(self, shape: torch.Size) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, device=self.device)


def _per_sample(v: torch.Tensor) -> torch.Tensor:
    """A per-sample value ``(N,)`` broadcast against ``(N, C, H, W)``."""
    return v[:, None, None, None]


def _depthwise(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Each sample of ``x (N, C, H, W)`` convolved with its own ``kernel (N, K, K)``, borders reflected (101)."""
    n, c, h, w = x.shape
    pad = kernel.shape[-1] // 2
    flat = F.pad(x.reshape(1, n * c, h, w), (pad, pad, pad, pad), mode="reflect")
    weight = kernel.repeat_interleave(c, 0)[:, None]
    return F.conv2d(flat, weight, groups=n * c).reshape(n, c, h, w)
