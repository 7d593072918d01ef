"""The original FER2013 CSV and the FER+ vote file that relabels it.

FER2013 (``fer2013.csv``): columns ``emotion,pixels,Usage``; ``pixels`` holds 2,304
space-separated values of a 48x48 grayscale face; ``Usage`` ``Training`` -> ``train``,
``PublicTest`` -> ``val``, ``PrivateTest`` -> ``test`` (a CSV without ``Usage`` is all
``train``). Row ``i`` (0-based, after the header) gets the id ``fer2013:i``. An optional
``subject`` column gives subject ids (fold plans keep a subject's rows together).

FER+ (``fer2013new.csv``): columns ``Usage,Image name`` then ten vote counts
``neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF``, row ``i``
describing row ``i`` of ``fer2013.csv``. Rows are kept or dropped like Microsoft's FERPlus
reader (see :func:`load_ferplus`); the soft label is the eight emotion votes normalised.
"""

from __future__ import annotations

import csv
import os
import warnings as _warnings
from pathlib import Path

import numpy as np

from ferray.data._build import LoadInfo, check_size_channels
from ferray.data._folder import FER2013_CLASSES
from ferray.data._table import FERData
from ferray.data._taxonomies import TAXONOMIES
from ferray.errors import DataError
from ferray.imaging import resize_array

__all__ = [
    "FER2013_CLASSES",
    "FERPLUS_CLASSES",
    "FERPLUS_HEADER",
    "FERPLUS_MODES",
    "USAGE_SPLITS",
    "load_fer2013_csv",
    "load_ferplus",
    "read_csv_header",
]

#: The eight FER+ emotions in FER+ label order.
FERPLUS_CLASSES: tuple[str, ...] = TAXONOMIES["basic8"]
#: Columns of ``fer2013new.csv``.
FERPLUS_HEADER: tuple[str, ...] = ("Usage", "Image name", *FERPLUS_CLASSES, "unknown", "NF")
#: ``Usage`` values and the canonical split each maps to.
USAGE_SPLITS: dict[str, str] = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
#: Row selection rules of :func:`load_ferplus`.
FERPLUS_MODES: tuple[str, ...] = ("plurality", "majority")
_SIDE = 48
_PIXELS = _SIDE * _SIDE


def read_csv_header(path: str | os.PathLike) -> list[str]:
    """The stripped column names of a CSV file's first line."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            first = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read CSV header ({exc})") from exc
    return [c.strip() for c in first]


def _columns(
    path: Path, header: list[str], required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, int]:
    lower = {c.lower(): i for i, c in enumerate(header)}
    missing = [c for c in required if c.lower() not in lower]
    if missing:
        raise DataError(f"{path}:1: header {header} lacks column(s) {missing}; expected {list(required + optional)}")
    return {c: lower[c.lower()] for c in required + optional if c.lower() in lower}


def _parse_fer2013(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None]:
    """``(pixels uint8 (N,48,48,1), labels, usages or None, line numbers, subjects or None)``."""
    header = read_csv_header(path)
    cols = _columns(path, header, ("emotion", "pixels"), ("Usage", "subject"))
    ci, pi, ui, si = cols["emotion"], cols["pixels"], cols.get("Usage"), cols.get("subject")
    subjects: list[str] = []
    width = len(header)
    file_size = max(path.stat().st_size, 1)
    cap = 1024
    buf = np.empty((cap, _PIXELS), np.uint8)
    labels: list[int] = []
    usages: list[str] = []
    lines: list[int] = []
    n = consumed = 0
    with open(path, newline="", encoding="utf-8-sig") as fh, _warnings.catch_warnings():
        # numpy < 2.3 only warns (and truncates) when np.fromstring meets bad text
        _warnings.simplefilter("error", DeprecationWarning)
        reader = csv.reader(fh)
        next(reader, None)
        for row in reader:
            line = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != width:
                raise DataError(f"{path}:{line}: expected {width} columns {header}, found {len(row)}")
            label_text = row[ci].strip()
            if not label_text.isdigit() or int(label_text) >= len(FER2013_CLASSES):
                raise DataError(
                    f"{path}:{line}: emotion is {label_text!r}, but must be an integer 0..6 "
                    f"({', '.join(f'{i} {c}' for i, c in enumerate(FER2013_CLASSES))})"
                )
            if ui is not None:
                usage = row[ui].strip()
                if usage not in USAGE_SPLITS:
                    raise DataError(f"{path}:{line}: Usage is {usage!r}, but must be one of {list(USAGE_SPLITS)}")
                usages.append(usage)
            if si is not None:
                subject = row[si].strip()
                if not subject:
                    raise DataError(f"{path}:{line}: the subject column is empty; give every row a subject id")
                subjects.append(subject)
            try:
                values = np.fromstring(row[pi], dtype=np.int64, sep=" ")
            except (ValueError, DeprecationWarning):
                values = None
            if values is None or values.size != _PIXELS:
                found = len(row[pi].split())
                raise DataError(
                    f"{path}:{line}: pixels must be {_PIXELS} space-separated integers 0..255 (48x48), found "
                    + (f"{found} value(s)" if values is not None else "text that is not all integers")
                )
            if values.min() < 0 or values.max() > 255:
                bad = values[(values < 0) | (values > 255)][0]
                raise DataError(f"{path}:{line}: pixel value {bad} is outside 0..255")
            if n == cap:
                if n == 1024:  # estimate the row count from the first rows' size
                    cap = max(2 * n, int(file_size / max(consumed, 1) * n * 1.05) + 16)
                else:
                    cap = int(cap * 1.5)
                buf = np.resize(buf, (cap, _PIXELS))
            buf[n] = values
            consumed += sum(map(len, row)) + len(row) + 1
            labels.append(int(label_text))
            lines.append(line)
            n += 1
    if n == 0:
        raise DataError(f"{path}: no data rows after the header")
    images = (buf[:n] if n == len(buf) else buf[:n].copy()).reshape(n, _SIDE, _SIDE, 1)
    return (
        images,
        np.asarray(labels, np.int64),
        (np.asarray(usages, object) if ui is not None else None),
        np.asarray(lines),
        (np.asarray(subjects, object) if si is not None else None),
    )


def _finish(images: np.ndarray, size: int | None, channels: int | None) -> tuple[np.ndarray, LoadInfo]:
    check_size_channels(size, channels)
    info = LoadInfo()
    info.sizes[f"{_SIDE}x{_SIDE}"] = len(images)
    info.modes["L"] = len(images)
    return resize_array(images, size or _SIDE, channels or 1), info


def load_fer2013_csv(
    path: str | os.PathLike, *, size: int | None = None, channels: int | None = None, strict: bool = False
) -> tuple[FERData, LoadInfo]:
    """Load the FER2013 CSV (native 48x48 grayscale unless ``size``/``channels`` say otherwise).

    Raises:
        DataError: a malformed row; the message names the file and line.
    """
    path = Path(path)
    images, labels, usages, lines, subjects = _parse_fer2013(path)
    images, info = _finish(images, size, channels)
    if subjects is not None:
        info.subjects = {"from": f"column 'subject' of {path.name}", "count": len(set(subjects.tolist()))}
    n = len(labels)
    splits = np.full(n, "train", object) if usages is None else np.asarray([USAGE_SPLITS[u] for u in usages], object)
    data = FERData(
        images=images,
        labels=labels,
        class_names=FER2013_CLASSES,
        ids=np.asarray([f"fer2013:{i}" for i in range(n)], object),
        splits=splits,
        sources=np.asarray([f"{path}:{ln}" for ln in lines], object),
        subjects=subjects,
        origin=str(path),
    )
    return data, info


def _parse_votes(path: Path) -> tuple[list[str], list[str], np.ndarray, list[int]]:
    header = read_csv_header(path)
    if [h.lower() for h in header] != [h.lower() for h in FERPLUS_HEADER]:
        raise DataError(f"{path}:1: header {header} is not the FER+ header {list(FERPLUS_HEADER)}")
    usages: list[str] = []
    names: list[str] = []
    votes: list[list[int]] = []
    lines: list[int] = []
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) != len(FERPLUS_HEADER):
                raise DataError(f"{path}:{line}: expected {len(FERPLUS_HEADER)} columns, found {len(row)}")
            usage = row[0].strip()
            if usage not in USAGE_SPLITS:
                raise DataError(f"{path}:{line}: Usage is {usage!r}, but must be one of {list(USAGE_SPLITS)}")
            try:
                v = [int(x) for x in row[2:]]
            except ValueError:
                raise DataError(f"{path}:{line}: vote counts must be non-negative integers, got {row[2:]}") from None
            if min(v) < 0:
                raise DataError(f"{path}:{line}: vote counts must be non-negative integers, got {row[2:]}")
            usages.append(usage)
            names.append(row[1].strip())
            votes.append(v)
            lines.append(line)
    return usages, names, np.asarray(votes, np.int64).reshape(-1, 10), lines


def _keep_rows(votes: np.ndarray, names: list[str], mode: str) -> tuple[np.ndarray, np.ndarray]:
    """``(keep mask, soft labels over the 8 emotions)`` following FERPlus' reader."""
    named = np.asarray([bool(n) for n in names])
    if mode == "plurality":
        # Drop rows whose first maximum vote is 'unknown' or 'NF', or without any emotion vote.
        emo = votes[:, :8].astype(np.float64)
        keep = named & (np.argmax(votes, axis=1) < 8) & (emo.sum(axis=1) > 0)
    else:
        # FERPlus 'majority': ignore single (outlier) votes, keep a row when one emotion
        # has more than half of the remaining votes.
        v = np.where(votes <= 1, 0, votes).astype(np.float64)
        top = np.argmax(v, axis=1)
        keep = named & (v.max(axis=1) > 0.5 * v.sum(axis=1)) & (top < 8)
        emo = v[:, :8]
    total = emo.sum(axis=1, keepdims=True)
    soft = np.divide(emo, total, out=np.zeros_like(emo), where=total > 0).astype(np.float32)
    return keep, soft


def load_ferplus(
    votes_path: str | os.PathLike,
    images: str | os.PathLike,
    *,
    size: int | None = None,
    channels: int | None = None,
    strict: bool = False,
    mode: str = "plurality",
) -> tuple[FERData, LoadInfo]:
    """Combine FER+ votes with the FER2013 pixels CSV, row by row.

    Args:
        votes_path: ``fer2013new.csv``.
        images: the original ``fer2013.csv`` (same rows, same order).
        mode: ``"plurality"`` drops rows without an image name and rows where ``unknown``
            or ``NF`` has the most votes; ``"majority"`` is FERPlus' stricter rule (single
            votes ignored, one emotion must hold more than half of the rest).

    The label is the argmax of the soft label (ties go to the earlier FER+ class).
    ``FERData.warnings`` says how many rows were dropped.
    """
    if mode not in FERPLUS_MODES:
        raise DataError(f"mode is {mode!r}, but must be one of {list(FERPLUS_MODES)}")
    votes_path, images = Path(votes_path), Path(images)
    for p in (votes_path, images):
        if not p.is_file():
            raise DataError(f"{p}: no such file")
    usages, names, votes, vlines = _parse_votes(votes_path)
    pixels, _, pusages, plines, psubjects = _parse_fer2013(images)
    if len(usages) != len(pixels):
        raise DataError(
            f"{votes_path} has {len(usages)} data rows but {images} has {len(pixels)}; "
            "FER+ votes must describe the FER2013 CSV row for row"
        )
    if pusages is not None:
        differ = np.flatnonzero(np.asarray(usages, object) != pusages)
        if len(differ):
            i = int(differ[0])
            raise DataError(
                f"{votes_path}:{vlines[i]}: Usage {usages[i]!r} disagrees with {images}:{plines[i]} "
                f"Usage {pusages[i]!r} ({len(differ)} row(s) differ); are the two files from the same release?"
            )
    keep, soft = _keep_rows(votes, names, mode)
    idx = np.flatnonzero(keep)
    no_name = sum(1 for n in names if not n)
    dropped = len(names) - len(idx)
    warnings = []
    if dropped:
        warnings.append(
            f"FER+ ({mode}): dropped {dropped} of {len(names)} rows ({no_name} without an image name, "
            f"{dropped - no_name} where unknown/NF votes win or no emotion is clear)"
        )
    kept_pixels = pixels[idx]
    del pixels
    out_images, info = _finish(kept_pixels, size, channels)
    if psubjects is not None:
        info.subjects = {"from": f"column 'subject' of {images.name}", "count": len(set(psubjects[idx].tolist()))}
    data = FERData(
        images=out_images,
        labels=np.argmax(soft[idx], axis=1).astype(np.int64),
        class_names=FERPLUS_CLASSES,
        ids=np.asarray([f"fer2013:{i}" for i in idx], object),
        splits=np.asarray([USAGE_SPLITS[usages[i]] for i in idx], object),
        sources=np.asarray([f"{images}:{plines[i]}" for i in idx], object),
        soft_labels=soft[idx],
        subjects=psubjects[idx] if psubjects is not None else None,
        origin=f"ferplus:{votes_path}?images={images}",
        warnings=tuple(warnings),
    )
    return data, info
