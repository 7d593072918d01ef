"""Decode image files into ``uint8`` arrays of one square size and channel count.

Every file-based source (class folders, RAF-CE, RAF-DB) decodes through
:func:`decode_image`; :func:`decode_many` fills one preallocated ``(N, S, S, C)`` array,
fanning out to worker processes when there are many files, so peak memory stays close
to the size of the decoded array.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import threading
import warnings
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ferray.errors import DataError

__all__ = [
    "IMAGE_EXTENSIONS",
    "DecodeResult",
    "decode_image",
    "decode_many",
    "probe_images",
    "resize_array",
]

#: File name endings (lower case) read as images.
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")

# Below this many files the start-up cost of worker processes outweighs their help.
_PARALLEL_MIN_FILES = 4096
_CHUNK = 512
_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _is_gray(im: Image.Image) -> bool:
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


@dataclass
class _Native:
    width: int
    height: int
    mode: str


def _decode(src: str | os.PathLike | bytes, size: int | None, channels: int) -> tuple[np.ndarray, _Native]:
    name = "<bytes>" if isinstance(src, bytes) else str(src)
    try:
        fh = io.BytesIO(src) if isinstance(src, bytes) else open(src, "rb")  # noqa: SIM115
    except OSError as exc:
        raise DataError(f"{name}: cannot open image ({exc.strerror or exc})") from exc
    try:
        with fh, Image.open(fh) as im:
            native = _Native(im.width, im.height, im.mode)
            if size is not None and im.format == "JPEG" and (im.width > 2 * size or im.height > 2 * size):
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale; still >= size on each side.
                im.draft("L" if channels == 1 else "RGB", (size, size))
            im.load()
            im = _normalise_mode(im)
            if channels == 1 and im.mode != "L":
                im = im.convert("L")  # ITU-R 601-2 luma
            elif channels == 3 and im.mode != "RGB":
                im = im.convert("RGB")
            if size is not None and im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
            arr = np.asarray(im, dtype=np.uint8)
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise DataError(f"{name}: unreadable image ({exc})") from exc
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return arr, native


def decode_image(src: str | os.PathLike | bytes, size: int | None = None, channels: int = 3) -> np.ndarray:
    """Decode one image file (or its bytes) to ``uint8`` ``(size, size, channels)``.

    Palette, alpha (composited on black), 16-bit, CMYK and other Pillow modes are
    converted; RGB becomes one channel through ITU-R 601-2 luma and grayscale is repeated
    to three. A non-square image is resized to the square (faces in FER datasets come
    aligned). With ``size=None`` the native size is kept.

    Raises:
        DataError: the file is missing, truncated or not an image; the message names it.
    """
    if channels not in (1, 3):
        raise DataError(f"channels is {channels!r}, but must be 1 or 3")
    if size is not None and (not isinstance(size, int) or size < 1):
        raise DataError(f"size is {size!r}, but must be a positive integer")
    return _decode(src, size, channels)[0]


@dataclass
class DecodeResult:
    """Outcome of :func:`decode_many`.

    Attributes:
        images: ``uint8`` ``(N, size, size, channels)``; rows of failed files are zero.
        ok: boolean mask of the files that decoded.
        failures: ``(index, message)`` for each file that did not decode.
        sizes: count of native ``"WxH"`` sizes among decoded files.
        modes: count of native Pillow modes among decoded files.
    """

    images: np.ndarray
    ok: np.ndarray
    failures: list[tuple[int, str]] = field(default_factory=list)
    sizes: Counter = field(default_factory=Counter)
    modes: Counter = field(default_factory=Counter)


def _decode_chunk(
    paths: Sequence[str], size: int, channels: int
) -> tuple[np.ndarray, list[tuple[int, str]], Counter, Counter]:
    out = np.zeros((len(paths), size, size, channels), np.uint8)
    failures: list[tuple[int, str]] = []
    sizes: Counter = Counter()
    modes: Counter = Counter()
    for i, path in enumerate(paths):
        try:
            arr, native = _decode(path, size, channels)
        except DataError as exc:
            failures.append((i, str(exc)))
            continue
        out[i] = arr
        sizes[f"{native.width}x{native.height}"] += 1
        modes[native.mode] += 1
    return out, failures, sizes, modes


def _mp_context() -> multiprocessing.context.BaseContext:
    # fork is fast and works from unguarded scripts; with Python threads running (Ray
    # drivers, notebooks) forkserver is the safe choice.
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def decode_many(
    paths: Sequence[str | os.PathLike],
    size: int,
    channels: int,
    *,
    workers: int | None = None,
) -> DecodeResult:
    """Decode ``paths`` into one preallocated array; failures are collected, not raised.

    ``workers=None`` uses up to ``os.cpu_count()`` processes when there are at least a few
    thousand files and decodes in this process otherwise; ``workers=1`` never starts any.
    """
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise DataError(f"workers is {workers!r}, but must be a positive integer")
    n = len(paths)
    strs = [str(p) for p in paths]
    result = DecodeResult(np.zeros((n, size, size, channels), np.uint8), np.ones(n, bool))
    if workers is None:
        workers = min(os.cpu_count() or 1, 8) if n >= _PARALLEL_MIN_FILES else 1
    workers = min(workers, max(1, n // _CHUNK))

    def merge(start: int, chunk: tuple[np.ndarray, list, Counter, Counter]) -> None:
        arr, failures, sizes, modes = chunk
        result.images[start : start + len(arr)] = arr
        for i, msg in failures:
            result.ok[start + i] = False
            result.failures.append((start + i, msg))
        result.sizes.update(sizes)
        result.modes.update(modes)

    if workers <= 1:
        for start in range(0, n, _CHUNK):
            merge(start, _decode_chunk(strs[start : start + _CHUNK], size, channels))
    else:
        starts = list(range(0, n, _CHUNK))
        done: set[int] = set()
        try:
            with ProcessPoolExecutor(workers, mp_context=_mp_context()) as pool, warnings.catch_warnings():
                # Python >= 3.12 warns on fork() with native (BLAS) threads; workers only decode.
                warnings.filterwarnings("ignore", message=".*multi-threaded.*fork", category=DeprecationWarning)
                # a bounded window of chunks in flight: finished chunks must not pile up in memory
                pending: dict[int, Future] = {}
                todo = iter(starts)
                for start in todo:
                    pending[start] = pool.submit(_decode_chunk, strs[start : start + _CHUNK], size, channels)
                    if len(pending) >= 2 * workers:
                        break
                while pending:
                    finished, _ = wait(pending.values(), return_when=FIRST_COMPLETED)
                    for start in [s for s, f in pending.items() if f in finished]:
                        merge(start, pending.pop(start).result())
                        done.add(start)
                        nxt = next(todo, None)
                        if nxt is not None:
                            pending[nxt] = pool.submit(_decode_chunk, strs[nxt : nxt + _CHUNK], size, channels)
        except BrokenProcessPool:
            # e.g. spawn from a script without an `if __name__ == "__main__":` guard
            for start in starts:
                if start not in done:
                    merge(start, _decode_chunk(strs[start : start + _CHUNK], size, channels))
    result.failures.sort()
    return result


def probe_images(paths: Sequence[str | os.PathLike], limit: int = 256) -> tuple[int | None, bool]:
    """Guess defaults from up to ``limit`` evenly spaced files (headers only).

    Returns ``(side, gray)``: the most common native side length (``max(width, height)``)
    and whether every probed image is grayscale. Unreadable files are skipped here; they
    are reported when decoded.
    """
    if not paths:
        return None, True
    idx = np.unique(np.linspace(0, len(paths) - 1, min(limit, len(paths))).astype(int))
    sides: Counter = Counter()
    gray = True
    for i in idx:
        try:
            with Image.open(Path(paths[i])) as im:
                sides[max(im.size)] += 1
                gray = gray and _is_gray(im)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            continue
    if not sides:
        return None, gray
    return sides.most_common(1)[0][0], gray


def resize_array(images: np.ndarray, size: int, channels: int) -> np.ndarray:
    """Resize ``uint8`` ``(N, H, W, C)`` images to ``(N, size, size, channels)`` (bilinear).

    Returns ``images`` itself when nothing changes. One channel becomes three by
    repetition, three become one through ITU-R 601-2 luma.
    """
    n, h, w, c = images.shape
    if (h, w, c) == (size, size, channels):
        return images
    out = np.empty((n, size, size, channels), np.uint8)
    mode = "L" if c == 1 else "RGB"
    for i in range(n):
        im = Image.fromarray(images[i, :, :, 0] if c == 1 else images[i], mode)
        if channels != c:
            im = im.convert("L" if channels == 1 else "RGB")
        if (h, w) != (size, size):
            im = im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
        arr = np.asarray(im, np.uint8)
        out[i] = arr[:, :, None] if arr.ndim == 2 else arr
    return out
