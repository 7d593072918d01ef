"""What ``predict`` reads: an image, a folder of images, a CSV of paths or pixels, or an array.

Each input becomes a stream of :class:`Item` (a name and a loader), so a folder of a
million files is listed but decoded a batch at a time. A loader raises
:class:`~ferray.errors.DataError` for an unreadable image; ``predict`` lists it and goes on.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ferray.errors import DataError
from ferray.imaging import IMAGE_EXTENSIONS, from_array, open_image, resize

__all__ = ["Item", "collect_inputs", "load_crops"]

#: ``loader(channels, draft_size)`` -> a Pillow image of mode L/RGB.
Loader = Callable[[int, "int | None"], Image.Image]


@dataclass(frozen=True)
class Item:
    """One image to predict: ``source`` names it in the output; ``load`` decodes it."""

    source: str
    load: Loader


def _file_item(path: Path, source: str | None = None) -> Item:
    return Item(source or str(path), lambda channels, draft: open_image(path, channels, draft))


def _list_folder(root: Path) -> list[Path]:
    files = []
    for base, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
                files.append(Path(base) / name)
    return files


def _pixels_item(text: str, source: str) -> Item:
    def load(channels: int, draft: int | None) -> Image.Image:
        try:
            values = np.array(text.split(), dtype=np.int64)
        except ValueError:
            raise DataError(f"{source}: pixels must be space-separated integers 0..255") from None
        side = round(float(np.sqrt(values.size)))
        if values.size == 0 or side * side != values.size:
            raise DataError(
                f"{source}: {values.size} pixel value(s), but a square grayscale image needs "
                "side x side values (FER2013: 2304 = 48 x 48)"
            )
        if values.min() < 0 or values.max() > 255:
            raise DataError(f"{source}: pixel values must be in 0..255")
        return from_array(values.astype(np.uint8).reshape(side, side), channels, source)

    return Item(source, load)


def _csv_items(path: Path) -> tuple[int, Iterator[Item]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [c.strip() for c in next(reader, [])]
            rows = sum(1 for row in reader if row and any(c.strip() for c in row))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: unreadable CSV ({exc})") from None
    lower = [c.lower() for c in header]
    if "path" in lower:
        column, kind = lower.index("path"), "path"
    elif "pixels" in lower:
        column, kind = lower.index("pixels"), "pixels"
    else:
        raise DataError(
            f"{path}:1: header {header} has neither a 'path' column (image files, relative to the "
            "CSV's folder) nor a 'pixels' column (FER2013-style space-separated grayscale values)"
        )

    def items() -> Iterator[Item]:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            next(reader, None)
            for row in reader:
                if not row or not any(c.strip() for c in row):
                    continue
                where = f"{path}:{reader.line_num}"
                value = row[column].strip() if column < len(row) else ""
                if kind == "pixels":
                    yield _pixels_item(value, where)
                elif not value:
                    yield Item(where, _fail(f"{where}: empty path"))
                else:
                    target = Path(value).expanduser()
                    yield _file_item(target if target.is_absolute() else path.parent / target, value)

    return rows, items()


def _fail(message: str) -> Loader:
    def load(channels: int, draft: int | None) -> Image.Image:
        raise DataError(message)

    return load


def _array_items(images: np.ndarray) -> tuple[int, Iterator[Item]]:
    if images.ndim not in (3, 4):
        raise DataError(f"images array has shape {images.shape}; expected (N, H, W) or (N, H, W, C) uint8")
    return len(images), (
        Item(f"array[{i}]", lambda c, d, a=images[i], i=i: from_array(a, c, f"array[{i}]")) for i in range(len(images))
    )


def collect_inputs(
    inputs: str | os.PathLike | Sequence[str | os.PathLike] | np.ndarray,
) -> tuple[int | None, Iterator[Item]]:
    """``(count, items)`` for an image path, a folder (recursive), a CSV, a list of paths or an array.

    Raises:
        DataError: a path that does not exist, a folder without images, a CSV without a
            ``path`` or ``pixels`` column.
    """
    if isinstance(inputs, np.ndarray):
        return _array_items(inputs)
    if isinstance(inputs, (str, os.PathLike)):
        path = Path(inputs).expanduser()
        if path.is_dir():
            files = _list_folder(path)
            if not files:
                raise DataError(f"{path}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder or below")
            return len(files), (_file_item(f) for f in files)
        if not path.exists():
            raise DataError(f"{path}: no such file or folder")
        if path.suffix.lower() == ".csv":
            return _csv_items(path)
        return 1, iter([_file_item(path)])
    if isinstance(inputs, Sequence):
        paths = [Path(p).expanduser() for p in inputs]
        return len(paths), (_file_item(p) for p in paths)
    raise DataError(f"inputs {type(inputs).__name__}: expected a path, a list of paths or a uint8 array")


def load_crops(
    item: Item, size: int, channels: int, detector: Callable[[np.ndarray], list] | None = None
) -> list[tuple[int | None, tuple[int, int, int, int] | None, np.ndarray]]:
    """``[(face, box, uint8 (size, size, channels))]`` of an item: the whole image resized, or each
    face ``detector`` finds on it (its index and ``(x, y, w, h)`` box in the image's pixels).

    The image is decoded once. Faces are searched at full resolution; without a detector the
    image is decoded no larger than the model needs.

    Raises:
        DataError: an unreadable image, or no face found (``"no face found"``).
    """
    image = item.load(channels, None if detector is not None else size)
    if detector is None:
        return [(None, None, resize(image, size))]
    boxes = detector(np.asarray(image.convert("L") if image.mode != "L" else image))
    if not boxes:
        raise DataError("no face found")
    return [
        (i, (int(x), int(y), int(w), int(h)), resize(image.crop((x, y, x + w, y + h)), size))
        for i, (x, y, w, h) in enumerate(boxes)
    ]
