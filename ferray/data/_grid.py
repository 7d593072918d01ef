"""A labelled PNG contact sheet of a dataset: a few images of every class (``ferray data grid``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ferray.data._table import FERData
from ferray.errors import DataError

__all__ = ["render_grid"]


def render_grid(
    data: FERData,
    path: str | os.PathLike,
    per_class: int = 8,
    tile: int | None = None,
) -> Path:
    """Write a PNG with ``per_class`` images of every class, one row per class, and return its path.

    Rows are labelled with the class name; images are taken in row order and enlarged by an
    integer factor (nearest neighbour) to about ``tile`` pixels (default: at least 96).
    """
    from PIL import Image, ImageDraw, ImageFont

    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise DataError(f"per_class={per_class!r} must be an integer >= 1")
    if len(data) == 0:
        raise DataError(f"{data.origin or 'data'}: no images to draw")
    h, w, c = data.image_shape
    factor = max(1, round((tile or max(96, h)) / h))
    th, tw = h * factor, w * factor
    try:
        font = ImageFont.load_default(size=max(12, th // 7))
    except TypeError:  # Pillow built without FreeType
        font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = 12 + max(int(probe.textlength(name, font=font)) for name in data.class_names)
    gap = 4
    canvas = Image.new("RGB", (label_w + per_class * (tw + gap), data.num_classes * (th + gap) + gap), "white")
    draw = ImageDraw.Draw(canvas)
    for k, name in enumerate(data.class_names):
        top = gap + k * (th + gap)
        draw.text((6, top + th // 2), name, fill="black", font=font, anchor="lm")
        rows = np.flatnonzero(data.labels == k)[:per_class]
        for j, i in enumerate(rows):
            pixels = data.images[i]
            im = Image.fromarray(pixels[..., 0] if c == 1 else pixels).convert("RGB")
            canvas.paste(im.resize((tw, th), Image.NEAREST), (label_w + j * (tw + gap), top))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, optimize=True)
    return path
