"""Decode images the way training data was decoded, with Pillow and numpy only.

This mirrors :func:`ferray.data.decode_image` (same mode conversions, ITU-R 601-2 luma,
bilinear resize with ``reducing_gap=2``), so a bundle sees the pixels its members were
trained on. :mod:`ferray.data` itself is not imported: it pulls in pyarrow, which the
predict-only install does not have. ``tests/predict`` checks the two stay identical.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from ferray.errors import DataError

__all__ = ["IMAGE_EXTENSIONS", "from_array", "open_image", "resize"]

#: File name endings (lower case) read as images (as ``ferray.data.IMAGE_EXTENSIONS``).
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")

_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _normalise_mode(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> ``L`` or ``RGB`` (alpha composited on black)."""
    mode = im.mode
    if mode in ("L", "RGB"):
        return im
    if mode == "1":
        return im.convert("L")
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else "RGB")
        mode = im.mode
        if mode == "RGB":
            return im
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(im)
        if mode == "F":
            arr = arr.astype(np.float64)
            scale = 255.0 if np.nanmax(arr, initial=0.0) <= 1.0 else 1.0
            arr = np.nan_to_num(arr * scale)
        else:
            arr = arr.astype(np.float64) / 257.0  # 16-bit 0..65535 -> 0..255
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
    if mode in ("RGBA", "LA", "La", "RGBa"):
        if mode in ("La", "RGBa"):  # premultiplied: colour already scaled by alpha
            return im.convert("L" if mode == "La" else "RGB")
        arr = np.asarray(im).astype(np.uint16)
        alpha = arr[..., -1:]
        comp = ((arr[..., :-1] * alpha + 127) // 255).astype(np.uint8)
        return Image.fromarray(comp[..., 0] if mode == "LA" else comp, "L" if mode == "LA" else "RGB")
    return im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, ...


def open_image(src: str | os.PathLike | bytes, channels: int, draft_size: int | None = None) -> Image.Image:
    """Decode an image file to a Pillow image of mode ``L`` (channels 1) or ``RGB`` (3).

    ``draft_size`` lets libjpeg decode a large JPEG at a reduced scale that still covers
    ``draft_size`` on each side (as training data was decoded); None keeps full resolution.

    Raises:
        DataError: missing, truncated or not an image; the message names the file.
    """
    name = "<bytes>" if isinstance(src, bytes) else str(src)
    try:
        fh = io.BytesIO(src) if isinstance(src, bytes) else open(src, "rb")  # noqa: SIM115
    except OSError as exc:
        raise DataError(f"{name}: cannot open image ({exc.strerror or exc})") from None
    try:
        with fh, Image.open(fh) as im:
            if (
                draft_size is not None
                and im.format == "JPEG"
                and (im.width > 2 * draft_size or im.height > 2 * draft_size)
            ):
                im.draft("L" if channels == 1 else "RGB", (draft_size, draft_size))
            im.load()
            im = _normalise_mode(im)
    except UnidentifiedImageError:
        raise DataError(f"{name}: unreadable image (not a format Pillow can decode)") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise DataError(f"{name}: unreadable image ({exc})") from None
    return to_channels(im, channels)


def to_channels(im: Image.Image, channels: int) -> Image.Image:
    if channels == 1 and im.mode != "L":
        return im.convert("L")  # ITU-R 601-2 luma
    if channels == 3 and im.mode != "RGB":
        return im.convert("RGB")
    return im


def resize(im: Image.Image, size: int) -> np.ndarray:
    """``uint8 (size, size, C)`` of a Pillow image (non-square images are stretched, as in training)."""
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    arr = np.asarray(im, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def from_array(arr: np.ndarray, channels: int, name: str = "<array>") -> Image.Image:
    """A Pillow image from ``uint8`` ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)``."""
    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        raise DataError(f"{name}: images must be uint8, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        im = Image.fromarray(arr, "L")
    elif arr.ndim == 3 and arr.shape[2] == 3:
        im = Image.fromarray(arr, "RGB")
    else:
        raise DataError(f"{name}: image shape {arr.shape}; expected (H, W), (H, W, 1) or (H, W, 3)")
    return to_channels(im, channels)
