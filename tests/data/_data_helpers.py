"""Tiny generated datasets for the data tests (nothing from ../shared)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image(
    path: Path, rng: np.random.Generator, size: int = 8, mode: str = "L", fmt: str | None = None
) -> np.ndarray:
    """Write a random image and return the pixels written (before any format conversion)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size, size) if mode == "L" else (size, size, 3)
    arr = rng.integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(arr, mode).save(path, format=fmt)
    return arr


def make_folder(
    root: Path, classes: dict[str, int], rng: np.random.Generator, split: str | None = None, ext: str = ".png"
) -> None:
    """``root[/split]/<class>/<i>.png`` with ``classes[name]`` images each."""
    base = root / split if split else root
    for name, n in classes.items():
        for i in range(n):
            write_image(base / name / f"{i:03d}{ext}", rng)


FER2013_ROW_PIXELS = 48 * 48


def fer2013_csv(path: Path, rows: list[tuple[int, str]], rng: np.random.Generator) -> np.ndarray:
    """A FER2013 CSV with ``(label, usage)`` rows of random pixels; returns the pixels."""
    pixels = rng.integers(0, 256, (len(rows), FER2013_ROW_PIXELS), dtype=np.uint8)
    lines = ["emotion,pixels,Usage"]
    for (label, usage), px in zip(rows, pixels):
        lines.append(f"{label},{' '.join(map(str, px))},{usage}")
    path.write_text("\n".join(lines) + "\n")
    return pixels.reshape(-1, 48, 48, 1)
