"""Overlay PNGs: the face, its heat map(s), the predicted class and probability, the target class."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["Panel", "draw_row", "save_overlay", "save_grid"]

#: Heat maps are blended over the face with this opacity.
ALPHA = 0.45


class Panel:
    """One cell: a title and a heat map (None: the face alone)."""

    def __init__(self, title: str, heat: np.ndarray | None) -> None:
        self.title, self.heat = title, heat


def _face_rgb(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    return img


def draw_row(axes: Sequence, image: np.ndarray, panels: Sequence[Panel]) -> None:
    face = _face_rgb(image)
    for ax, panel in zip(axes, panels):
        ax.imshow(face, cmap="gray" if face.ndim == 2 else None, vmin=0, vmax=255, interpolation="bilinear")
        if panel.heat is not None:
            ax.imshow(panel.heat, cmap="jet", alpha=ALPHA, vmin=0.0, vmax=1.0, interpolation="bilinear")
        ax.set_title(panel.title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])


def _figure(rows: int, cols: int, title: str | None):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2.3 * cols, 2.5 * rows + (0.35 if title else 0)), dpi=100, layout="constrained")
    if title:
        fig.suptitle(title, fontsize=9)
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False))
    return fig, axes


def save_overlay(path: Path, image: np.ndarray, panels: Sequence[Panel], title: str) -> Path:
    fig, axes = _figure(1, len(panels), title)
    draw_row(axes[0], image, panels)
    fig.savefig(path)
    return path


def save_grid(path: Path, rows: Sequence[tuple[np.ndarray, Sequence[Panel], str]], title: str) -> Path:
    """One row per image (``(image, panels, row label)``), the same columns in each row."""
    cols = max(len(p) for _, p, _ in rows)
    fig, axes = _figure(len(rows), cols, title)
    for r, (image, panels, label) in enumerate(rows):
        draw_row(axes[r], image, panels)
        axes[r][0].set_ylabel(label, fontsize=7)
        for ax in axes[r][len(panels) :]:
            ax.axis("off")
    fig.savefig(path)
    return path
