"""A fold's training images held on its device, and when to hold them there.

The device-resident data path keeps a fold's training rows as one ``uint8 (N, C, size, size)``
tensor on the fold's device (already resized and channel-converted exactly as the evaluation
transform does) and augments whole batches there with
:class:`~ferray.training.batch_augment.BatchAugment`, with no DataLoader. ``run.data_path``
chooses: ``device``, ``loader`` (the per-image albumentations DataLoader), or ``auto``:
the device path when the images fit :data:`BUDGET_FRACTION` of the device's free memory, on
CUDA always, on CPU when no loader worker processes were asked for (``run.loader_workers:
0``: then the batch augmentation is faster than the per-image one in the same process;
with workers, the loader overlaps augmentation with the training step).

>>> choose_data_path("auto", "cuda", nbytes=66_000_000, budget=10_000_000_000, loader_workers=4)
'device'
>>> choose_data_path("auto", "cuda", nbytes=66_000_000, budget=20_000_000, loader_workers=4)
'loader'
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ferray.training.augment import build_eval_transform

__all__ = ["DATA_PATHS", "BUDGET_FRACTION", "choose_data_path", "free_bytes", "resident_images"]

DATA_PATHS = ("auto", "device", "loader")
#: Share of the device's free memory a fold's resident images may take under ``auto``. Small,
#: because several folds may share one GPU and all of them measure the free memory at start.
BUDGET_FRACTION = 0.1


def choose_data_path(mode: str, device: torch.device | str, nbytes: int, budget: int, loader_workers: int) -> str:
    """``"device"`` or ``"loader"`` for ``run.data_path: mode`` (see the module docstring).

    ``nbytes`` is the size of the resident images, ``budget`` what ``auto`` lets them take
    (the trainer's default: :data:`BUDGET_FRACTION` of :func:`free_bytes`).
    """
    if mode not in DATA_PATHS:
        raise ValueError(f"data path is {mode!r}, but must be one of {', '.join(DATA_PATHS)}")
    if mode != "auto":
        return mode
    kind = torch.device(device).type
    if kind != "cuda" and loader_workers > 0:
        return "loader"
    return "device" if nbytes <= budget else "loader"


def free_bytes(device: torch.device | str) -> int:
    """Free memory of ``device``: CUDA's free memory, or the host's available memory for the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def resident_images(images: np.ndarray, index: np.ndarray, size: int, channels: int) -> np.ndarray:
    """Rows ``index`` of ``uint8 (N, H, W, C)`` images as ``uint8 (len(index), channels, size, size)``.

    Resized and channel-converted by the evaluation transform's own ``prepare`` (OpenCV), so a
    resident image is the very image the per-image transforms would augment or normalise.
    """
    if len(index) and images.shape[1:] == (size, size, channels):
        return np.ascontiguousarray(images[index].transpose(0, 3, 1, 2))
    prepare = build_eval_transform(size, channels).prepare
    out = np.empty((len(index), channels, size, size), dtype=np.uint8)
    for i, row in enumerate(index):
        out[i] = prepare(images[row]).transpose(2, 0, 1)
    return out
