"""Image pipelines: albumentations training augmentation and the evaluation transform.

Transforms map one ``uint8`` image ``(H, W, C)`` (C = 1 or 3) to a ``float32`` array
``(C, size, size)`` normalised with mean 0.5 and std 0.5 per channel (values in [-1, 1]).
They run per sample in the data-loading hot path, so resizing is skipped when the image
already has the target size and normalisation writes straight into the output array.

>>> import numpy as np
>>> tf = build_train_transform(48, channels=1, strength=0.5, seed=0)
>>> tf(np.zeros((64, 64, 1), np.uint8)).shape
(1, 48, 48)
"""

from __future__ import annotations

import os

import albumentations as A
import cv2
import numpy as np

__all__ = ["ImageTransform", "build_train_transform", "build_eval_transform", "apply_batch", "to_chw_float"]

_SCALE = np.float32(1.0 / 127.5)


def to_chw_float(image: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``uint8 (H, W, C)`` -> ``float32 (C, H, W)`` in [-1, 1] (mean 0.5, std 0.5), into ``out``."""
    if out is None:
        out = np.empty((image.shape[2], image.shape[0], image.shape[1]), dtype=np.float32)
    np.multiply(image.transpose(2, 0, 1), _SCALE, out=out, dtype=np.float32)
    out -= 1.0
    return out


class ImageTransform:
    """A callable ``uint8 (H, W, C) -> float32 (C, size, size)``: resize, augment, normalise.

    Attributes:
        size: output side.
        channels: 1 or 3; inputs with the other channel count are converted.
        augment: the albumentations pipeline, or None for no augmentation.
    """

    def __init__(self, size: int, channels: int, augment: A.Compose | None = None, seed: int | None = None) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels is {channels}, but must be 1 or 3")
        if size < 1:
            raise ValueError(f"size is {size}, but must be >= 1")
        self.size = size
        self.channels = channels
        self.augment = augment
        self.seed = seed
        self._pid = os.getpid()

    def reseed(self, seed: int | None) -> None:
        """Reseed the augmentation stream."""
        self.seed = seed
        self._pid = os.getpid()
        if self.augment is not None:
            self.augment.set_random_seed(seed)

    def _check_process(self) -> None:
        # A DataLoader worker holds a copy of this transform and its generator state; without
        # a reseed every worker would replay the same augmentation stream.
        self._pid = os.getpid()
        import torch.utils.data

        info = torch.utils.data.get_worker_info()
        if info is not None and self.augment is not None:
            seed = None if self.seed is None else int(np.random.SeedSequence([self.seed, info.id]).generate_state(1)[0])
            self.augment.set_random_seed(seed)

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Resize to ``size`` and convert channels; returns ``uint8 (size, size, channels)``."""
        if image.ndim == 2:
            image = image[:, :, None]
        if image.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (H, W, C), got dtype {image.dtype}")
        c = image.shape[2]
        if c != self.channels:
            if c == 3 and self.channels == 1:
                image = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)[:, :, None]
            elif c == 1 and self.channels == 3:
                image = np.repeat(image, 3, axis=2)
            else:
                raise ValueError(f"images have {c} channels; expected 1 or 3")
        if image.shape[0] != self.size or image.shape[1] != self.size:
            shrink = image.shape[0] > self.size
            image = cv2.resize(
                np.ascontiguousarray(image),
                (self.size, self.size),
                interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR,
            )
            if image.ndim == 2:
                image = image[:, :, None]
        return image

    def __call__(self, image: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        image = self.prepare(image)
        if self.augment is not None:
            if os.getpid() != self._pid:
                self._check_process()
            image = self.augment(image=np.ascontiguousarray(image))["image"]
            if image.ndim == 2:
                image = image[:, :, None]
        return to_chw_float(image, out)

    def __repr__(self) -> str:
        steps = "none" if self.augment is None else ", ".join(type(t).__name__ for t in self.augment.transforms)
        return f"ImageTransform(size={self.size}, channels={self.channels}, augment=[{steps}])"


def build_train_transform(size: int, channels: int, strength: float, seed: int | None) -> ImageTransform:
    """The training transform; ``strength`` in [0, 1] scales probabilities and magnitudes.

    Steps (after resizing to ``size``): horizontal flip, affine shift/scale/rotate,
    brightness/contrast, one of Gaussian blur / motion blur / Gaussian noise, and coarse
    dropout (occlusion). ``strength=0`` keeps only resize + normalise, which is
    deterministic. ``seed`` seeds the pipeline's own generator (never a global one); in a
    DataLoader worker process the stream is reseeded from ``(seed, worker_id)`` on first
    use, so workers do not repeat each other's augmentations.
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength is {strength}, but must be in [0, 1]")
    if strength == 0.0:
        return ImageTransform(size, channels, None)
    s = float(strength)
    steps = [
        A.HorizontalFlip(p=0.5),
        A.Affine(
            scale=(1.0 - 0.15 * s, 1.0 + 0.15 * s),
            translate_percent=(-0.08 * s, 0.08 * s),
            rotate=(-15.0 * s, 15.0 * s),
            border_mode=cv2.BORDER_REFLECT_101,
            p=0.3 + 0.5 * s,
        ),
        A.RandomBrightnessContrast(brightness_limit=0.3 * s, contrast_limit=0.3 * s, p=0.3 + 0.5 * s),
        A.OneOf(
            [
                A.GaussianBlur(blur_limit=(3, 5), p=1.0),
                A.MotionBlur(blur_limit=(3, 5), p=1.0),
                A.GaussNoise(std_range=(0.02, 0.02 + 0.08 * s), p=1.0),
            ],
            p=0.3 * s,
        ),
        A.CoarseDropout(
            num_holes_range=(1, max(1, round(1 + 2 * s))),
            hole_height_range=(0.05, 0.05 + 0.2 * s),
            hole_width_range=(0.05, 0.05 + 0.2 * s),
            fill=0,
            p=0.5 * s,
        ),
    ]
    return ImageTransform(size, channels, A.Compose(steps, seed=seed), seed=seed)


def build_eval_transform(size: int, channels: int) -> ImageTransform:
    """Resize + normalise, no randomness."""
    return ImageTransform(size, channels, None)


def apply_batch(transform: ImageTransform, images: np.ndarray) -> np.ndarray:
    """Apply ``transform`` to each ``uint8 (N, H, W, C)`` image -> ``float32 (N, C, size, size)``."""
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, H, W, C), got {images.shape}")
    out = np.empty((len(images), transform.channels, transform.size, transform.size), dtype=np.float32)
    for i, image in enumerate(images):
        transform(image, out=out[i])
    return out
