"""Many image files into one preallocated ``uint8`` array; a folder's size and colour guessed.

:func:`decode_many` fills ``(N, S, S, C)`` through :func:`~ferray.imaging.decode_image`'s
conversions, fanning out to worker processes when there are many files, so peak memory
stays close to the size of the decoded array; failures are collected, not raised.
:func:`probe_images` reads a sample of headers to pick defaults, and :func:`resize_array`
brings already-decoded arrays (FER2013's CSV pixels) to a size and channel count.
"""

from __future__ import annotations

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
from ferray.imaging._decode import _decode, is_gray

__all__ = ["DecodeResult", "decode_many", "probe_images", "resize_array"]

# Below this many files the start-up cost of worker processes outweighs their help.
_PARALLEL_MIN_FILES = 4096
_CHUNK = 512


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
                gray = gray and is_gray(im)
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
