"""Shared assembly of a :class:`FERData` from image files plus per-row labels."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ferray.data._subjects import resolve_subjects
from ferray.data._table import FERData
from ferray.errors import DataError
from ferray.imaging import decode_many, probe_images

__all__ = ["LoadInfo", "MAX_DEFAULT_SIZE", "check_size_channels", "from_files", "summarise"]

#: ``size=None`` picks the most common native side, but never more than this.
MAX_DEFAULT_SIZE = 224
# How many individual unreadable files FERData.warnings lists before summarising.
_MAX_LISTED = 50


@dataclass
class LoadInfo:
    """What a loader saw beyond the rows it kept (used by ``check``)."""

    sizes: Counter = field(default_factory=Counter)
    modes: Counter = field(default_factory=Counter)
    unreadable: list[str] = field(default_factory=list)
    #: the lines of ``FERData.warnings`` that list ``unreadable`` (``check`` reports them as errors)
    unreadable_lines: set[str] = field(default_factory=set)
    #: where subject ids came from (see :func:`ferray.data._subjects.resolve_subjects`)
    subjects: dict = field(default_factory=dict)
    #: how class names were mapped: ``taxonomy``, ``renamed`` ``{original: class}``, ``unknown``
    classes: dict = field(default_factory=dict)


def check_size_channels(size: object, channels: object) -> None:
    """Raise :class:`DataError` unless ``size`` is ``None``/positive int and ``channels`` ``None``/1/3."""
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise DataError(f"size is {size!r}, but must be a positive integer (pixels per side)")
    if channels is not None and channels not in (1, 3):
        raise DataError(f"channels is {channels!r}, but must be 1 (grayscale) or 3 (RGB)")


def summarise(messages: Sequence[str], what: str, limit: int = _MAX_LISTED) -> list[str]:
    """The first ``limit`` messages, then one line counting the rest."""
    out = list(messages[:limit])
    if len(messages) > limit:
        out.append(f"... and {len(messages) - limit} more {what}")
    return out


def _compact(images: np.ndarray, ok: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """``images[ok]`` without a second full-size copy (kept rows move forward in place)."""
    kept = np.flatnonzero(ok)
    for dst in range(0, len(kept), chunk):
        src = kept[dst : dst + chunk]
        images[dst : dst + len(src)] = images[src]
    return images[: len(kept)]


def from_files(
    paths: Sequence[str | os.PathLike],
    *,
    labels: np.ndarray,
    class_names: Sequence[str],
    ids: Sequence[str],
    splits: Sequence[str],
    origin: str,
    size: int | None,
    channels: int | None,
    strict: bool,
    workers: int | None = None,
    soft_labels: np.ndarray | None = None,
    aus: np.ndarray | None = None,
    subjects: Sequence[str] | None = None,
    warnings: Sequence[str] = (),
    original_class_names: Sequence[str] | None = None,
    subject: object = None,
) -> tuple[FERData, LoadInfo]:
    """Decode ``paths`` and build the dataset; unreadable files are dropped and reported.

    With ``strict=True`` any unreadable file raises :class:`DataError` instead. Without
    ``subjects``, the ``subject`` option (``auto``, ``none`` or a regular expression; see
    :mod:`ferray.data._subjects`) finds them in the file names, before any image is decoded.
    """
    check_size_channels(size, channels)
    subject_report: dict = {}
    if subjects is None:
        subjects, subject_report = resolve_subjects(
            subject, np.asarray([str(p) for p in paths], object), np.asarray(ids, object)
        )
    if size is None or channels is None:
        side, gray = probe_images(paths)
        if size is None:
            size = min(side or 48, MAX_DEFAULT_SIZE)
        if channels is None:
            channels = 1 if gray else 3
    res = decode_many(paths, size, channels, workers=workers)
    info = LoadInfo(res.sizes, res.modes, [msg for _, msg in res.failures], subjects=subject_report)
    if res.failures and strict:
        listed = "; ".join(summarise(info.unreadable, "unreadable files", 5))
        raise DataError(f"{origin}: {len(res.failures)} unreadable image(s) (strict): {listed}")
    if res.failures and not res.ok.any():
        raise DataError(f"{origin}: none of the {len(paths)} images could be read: {info.unreadable[0]}")
    warn = list(warnings)
    if res.failures:
        listed = [f"skipped {len(res.failures)} unreadable image(s):", *summarise(info.unreadable, "unreadable files")]
        warn.extend(listed)
        info.unreadable_lines.update(listed)
    keep = res.ok if res.failures else slice(None)

    def col(values: Sequence | np.ndarray | None, dtype: object = object) -> np.ndarray | None:
        if values is None:
            return None
        arr = np.asarray(values, dtype=dtype) if dtype is object else np.asarray(values)
        return arr[keep]

    images = _compact(res.images, res.ok) if res.failures else res.images
    data = FERData(
        images=images,
        labels=np.asarray(labels, np.int64)[keep],
        class_names=tuple(class_names),
        ids=col(ids),
        splits=col(splits),
        sources=col([str(p) for p in paths]),
        soft_labels=col(soft_labels, None),
        aus=col(aus, None),
        subjects=col(subjects),
        origin=origin,
        warnings=tuple(warn),
        original_class_names=tuple(original_class_names) if original_class_names is not None else None,
    )
    return data, info
