"""One image file (or array) to ``uint8`` pixels of one square size and channel count.

Every Pillow mode becomes ``L`` or ``RGB`` the same way (palette expanded, alpha composited
on black, 16-bit and float scaled to 0..255, CMYK and the rest through Pillow's ``RGB``); RGB
becomes one channel through ITU-R 601-2 luma, gray becomes three by repetition, and the
resize is bilinear with ``reducing_gap=2``. Dataset building and ``ferray predict`` both
decode here, so a bundle sees the pixels its members were trained on.

>>> import io
>>> from PIL import Image
>>> buf = io.BytesIO(); Image.new("RGBA", (20, 10), (200, 0, 0, 255)).save(buf, "PNG")
>>> decode_image(buf.getvalue(), size=8, channels=1).shape
(8, 8, 1)
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from ferray.errors import DataError

__all__ = [
    "IMAGE_EXTENSIONS",
    "decode_image",
    "open_image",
    "from_array",
    "to_channels",
    "resize",
    "is_gray",
]

#: File name endings (lower case) read as images.
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")

_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def is_gray(im: Image.Image) -> bool:
    """Whether a Pillow image holds no colour: a gray mode, or a palette of gray entries only."""
    if im.mode in _GRAY_MODES:
        return True
    if im.mode in ("P", "PA"):
        pal = im.getpalette() or []
        return all(pal[i] == pal[i + 1] == pal[i + 2] for i in range(0, len(pal) - 2, 3))
    return False


def _normalise_mode(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to ``L`` or ``RGB`` (alpha composited on black)."""
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
            # 16-bit data (I;16, or I from 16-bit PNG/TIFF): 0..65535 maps to 0..255.
            arr = arr.astype(np.float64) / 257.0
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
    if mode in ("RGBA", "LA", "La", "RGBa"):
        if mode in ("La", "RGBa"):  # premultiplied: colour already scaled by alpha
            return im.convert("L" if mode == "La" else "RGB")
        arr = np.asarray(im).astype(np.uint16)
        alpha = arr[..., -1:]
        # composite on black: colour * alpha / 255, rounded
        comp = ((arr[..., :-1] * alpha + 127) // 255).astype(np.uint8)
        return Image.fromarray(comp[..., 0] if mode == "LA" else comp, "L" if mode == "LA" else "RGB")
    # CMYK, YCbCr, LAB, HSV, ...
    return im.convert("RGB")


@dataclass(frozen=True)
class _Native:
    """What a file held before conversion (``decode_many`` counts these)."""

    width: int
    height: int
    mode: str


def _open(src: str | os.PathLike | bytes, channels: int, draft_size: int | None) -> tuple[Image.Image, _Native]:
    name = "<bytes>" if isinstance(src, bytes) else str(src)
    try:
        fh = io.BytesIO(src) if isinstance(src, bytes) else open(src, "rb")  # noqa: SIM115
    except OSError as exc:
        raise DataError(f"{name}: cannot open image ({exc.strerror or exc})") from exc
    try:
        with fh, Image.open(fh) as im:
            native = _Native(im.width, im.height, im.mode)
            if (
                draft_size is not None
                and im.format == "JPEG"
                and (im.width > 2 * draft_size or im.height > 2 * draft_size)
            ):
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale; still >= draft_size on each side.
                im.draft("L" if channels == 1 else "RGB", (draft_size, draft_size))
            im.load()
            im = to_channels(_normalise_mode(im), channels)
    except UnidentifiedImageError as exc:
        raise DataError(f"{name}: unreadable image (not a format Pillow can decode)") from exc
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise DataError(f"{name}: unreadable image ({exc})") from exc
    return im, native


def open_image(src: str | os.PathLike | bytes, channels: int, draft_size: int | None = None) -> Image.Image:
    """Decode an image file (or its bytes) to a Pillow image of mode ``L`` (channels 1) or ``RGB`` (3).

    ``draft_size`` lets libjpeg decode a large JPEG at a reduced scale that still covers
    ``draft_size`` on each side (as :func:`decode_image` does); None keeps full resolution.

    Raises:
        DataError: missing, truncated or not an image; the message names the file.
    """
    return _open(src, channels, draft_size)[0]


def to_channels(im: Image.Image, channels: int) -> Image.Image:
    """An ``L`` or ``RGB`` image as ``channels`` 1 (ITU-R 601-2 luma) or 3 (gray repeated)."""
    if channels == 1 and im.mode != "L":
        return im.convert("L")  # ITU-R 601-2 luma
    if channels == 3 and im.mode != "RGB":
        return im.convert("RGB")
    return im


def resize(im: Image.Image, size: int | None) -> np.ndarray:
    """``uint8 (size, size, C)`` of a Pillow image; a non-square image is stretched (FER faces
    come aligned), and ``size=None`` keeps the image's own size."""
    if size is not None and im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    arr = np.asarray(im, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def from_array(arr: np.ndarray, channels: int, name: str = "<array>") -> Image.Image:
    """A Pillow image of ``channels`` from ``uint8`` ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)``.

    Raises:
        DataError: another dtype or shape; the message names ``name``.
    """
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


def _decode(src: str | os.PathLike | bytes, size: int | None, channels: int) -> tuple[np.ndarray, _Native]:
    im, native = _open(src, channels, size)
    return resize(im, size), native


def decode_image(src: str | os.PathLike | bytes, size: int | None = None, channels: int = 3) -> np.ndarray:
    """Decode one image file (or its bytes) to ``uint8`` ``(size, size, channels)``.

    Palette, alpha (composited on black), 16-bit, CMYK and other Pillow modes are
    converted; RGB becomes one channel through ITU-R 601-2 luma and grayscale is repeated
    to three. A non-square image is resized to the square (faces in FER datasets come
    aligned). With ``size=None`` the native size is kept.

    Raises:
        DataError: the file is missing, truncated or not an image, or bad ``size`` or
            ``channels``; the message names the file or the argument.
    """
    if channels not in (1, 3):
        raise DataError(f"channels is {channels!r}, but must be 1 or 3")
    if size is not None and (not isinstance(size, int) or size < 1):
        raise DataError(f"size is {size!r}, but must be a positive integer")
    return _decode(src, size, channels)[0]
