"""RAF-CE (14 compound emotions, with action units) and RAF-DB basic (7 emotions).

RAF-CE folder: ``RAFCE_partition.txt`` (``0001.jpg 0``; 0 train, 1 test, 2 val),
``RAFCE_emolabel.txt`` (``0001.jpg 5``; classes 0..13) and optionally
``RAFCE_AUlabel.txt`` (``0001.jpg 1+4+25``; tokens may carry ``L``/``R``/``B``/``T``
side prefixes such as ``L12``; ``null`` means none). RAF-DB basic folder:
``list_patition_label.txt`` (``train_00001.jpg 5``; classes 1..7; split from the name).

Images are looked up next to the label files and in ``aligned/``, ``Image/aligned/``,
``images/``, ``Image/original/`` and ``original/``, as ``0001.jpg`` or ``0001_aligned.jpg``.
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from ferray.data._build import LoadInfo, from_files, summarise
from ferray.data._table import AU_IDS, FERData
from ferray.data._taxonomies import TAXONOMIES
from ferray.errors import DataError

__all__ = [
    "RAFCE_CLASSES",
    "RAFDB_CLASSES",
    "RAFCE_FILES",
    "RAFDB_LABEL_FILE",
    "IMAGE_SUBDIRS",
    "load_rafce",
    "load_rafdb",
    "parse_au_tokens",
]

#: RAF-CE's 14 compound classes in label order (0..13).
RAFCE_CLASSES: tuple[str, ...] = TAXONOMIES["compound14"]
#: RAF-DB's basic classes in label order (file labels 1..7 map to 0..6).
RAFDB_CLASSES: tuple[str, ...] = ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")
#: ``(partition, emotion labels, action units)`` file names of RAF-CE; the last is optional.
RAFCE_FILES: tuple[str, str, str] = ("RAFCE_partition.txt", "RAFCE_emolabel.txt", "RAFCE_AUlabel.txt")
RAFDB_LABEL_FILE = "list_patition_label.txt"
#: Folders (relative to the label files) searched for images, in order.
IMAGE_SUBDIRS: tuple[str, ...] = (".", "aligned", "Image/aligned", "images", "Image/original", "original")
_RAFCE_SPLITS = {"0": "train", "1": "test", "2": "val"}
_AU_INDEX = {au: i for i, au in enumerate(AU_IDS)}
_AU_TOKEN = re.compile(r"^([LRBT]*)(\d+)$", re.IGNORECASE)
_MAX_EXAMPLES = 3


def parse_au_tokens(text: str) -> tuple[np.ndarray, list[int], list[str]]:
    """Parse a RAF-CE AU field such as ``"1+L12+24"`` into an 18-long multi-hot vector.

    Side prefixes (``L``, ``R``, ``B``, ``T``, any case, possibly combined) are dropped:
    ``L12`` counts as AU12. ``null`` or an empty field means no AUs.

    Returns:
        ``(vector, unknown_aus, bad_tokens)``: the ``uint8`` vector in :data:`AU_IDS`
        order, AUs that parsed but are not among the 18, and tokens that did not parse.

    >>> vec, unknown, bad = parse_au_tokens("L12+24+27+AD19")
    >>> [au for au, on in zip(AU_IDS, vec) if on], unknown, bad
    ([12, 24], [27], ['AD19'])
    """
    vec = np.zeros(len(AU_IDS), np.uint8)
    unknown: list[int] = []
    bad: list[str] = []
    text = text.strip()
    if not text or text.lower() == "null":
        return vec, unknown, bad
    for token in text.split("+"):
        token = token.strip()
        m = _AU_TOKEN.match(token)
        if not m:
            bad.append(token)
            continue
        au = int(m.group(2))
        if au in _AU_INDEX:
            vec[_AU_INDEX[au]] = 1
        else:
            unknown.append(au)
    return vec, unknown, bad


def _read_pairs(path: Path) -> tuple[dict[str, str], dict[str, int], list[str]]:
    """``{id: value}``, ``{id: line}`` and ids in file order; duplicates are errors."""
    values: dict[str, str] = {}
    lines: dict[str, int] = {}
    order: list[str] = []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read label file ({exc})") from exc
    for line_no, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise DataError(f"{path}:{line_no}: expected '<image> <value>', found {line.strip()!r}")
        key, value = parts
        if key in values:
            raise DataError(f"{path}:{line_no}: id {key!r} repeats line {lines[key]}")
        values[key] = value
        lines[key] = line_no
        order.append(key)
    if not order:
        raise DataError(f"{path}: no labelled images")
    return values, lines, order


def _image_index(root: Path, images: str | os.PathLike | None) -> dict[str, str]:
    """Map file names (and ``name`` for ``name_aligned.ext``) to full paths."""
    dirs = [Path(images)] if images is not None else [root / d for d in IMAGE_SUBDIRS]
    if images is not None and not dirs[0].is_dir():
        raise DataError(f"images is {str(images)!r}, but that is not a directory")
    found: dict[str, str] = {}
    for d in dirs:
        if not d.is_dir():
            continue
        for entry in os.scandir(d):
            if not entry.is_file():
                continue
            name = entry.name
            found.setdefault(name, entry.path)
            stem, ext = os.path.splitext(name)
            if stem.endswith("_aligned"):
                found.setdefault(stem[: -len("_aligned")] + ext, entry.path)
    return found


def _resolve(ids: list[str], index: dict[str, str], label_file: Path, lines: dict[str, int], root: Path) -> list[str]:
    missing = [i for i in ids if i not in index]
    if missing:
        first = missing[0]
        raise DataError(
            f"{label_file}:{lines[first]}: no image for id {first!r} ({len(missing)} of {len(ids)} ids lack one); "
            f"looked in {[str(root / d) for d in IMAGE_SUBDIRS]} for '{first}' or "
            f"'{os.path.splitext(first)[0]}_aligned{os.path.splitext(first)[1]}'; pass images=DIR to point elsewhere"
        )
    return [index[i] for i in ids]


def load_rafce(
    root: str | os.PathLike,
    *,
    size: int | None = None,
    channels: int | None = None,
    strict: bool = False,
    images: str | os.PathLike | None = None,
    workers: int | None = None,
    subject: object = None,
) -> tuple[FERData, LoadInfo]:
    """Load a RAF-CE folder (labels, partition, optional AUs, images).

    AUs outside the 18 of :data:`AU_IDS` and unparseable AU tokens are counted in
    ``FERData.warnings`` with ``file:line`` examples; with ``strict=True`` an unparseable
    token raises.
    """
    root = Path(root)
    part_file, emo_file, au_file = (root / f for f in RAFCE_FILES)
    parts, part_lines, order = _read_pairs(part_file)
    emos, emo_lines, _ = _read_pairs(emo_file)
    au_text: dict[str, str] | None = None
    if au_file.is_file():
        au_text, au_lines, _ = _read_pairs(au_file)
    files = [(part_file, parts), (emo_file, emos)] + ([(au_file, au_text)] if au_text is not None else [])
    for f, table in files[1:]:
        only_a = [i for i in order if i not in table]
        only_b = [i for i in table if i not in parts]
        if only_a or only_b:
            raise DataError(
                f"{f} and {part_file} list different ids: {len(only_a)} only in {part_file.name} "
                f"(e.g. {only_a[:_MAX_EXAMPLES]}), {len(only_b)} only in {f.name} (e.g. {only_b[:_MAX_EXAMPLES]})"
            )
    labels = np.empty(len(order), np.int64)
    splits: list[str] = []
    for k, i in enumerate(order):
        if parts[i] not in _RAFCE_SPLITS:
            raise DataError(
                f"{part_file}:{part_lines[i]}: partition {parts[i]!r} for {i!r} must be 0 (train), 1 (test) or 2 (val)"
            )
        splits.append(_RAFCE_SPLITS[parts[i]])
        v = emos[i]
        if not v.isdigit() or int(v) >= len(RAFCE_CLASSES):
            raise DataError(
                f"{emo_file}:{emo_lines[i]}: emotion label {v!r} for {i!r} "
                f"must be an integer 0..{len(RAFCE_CLASSES) - 1}"
            )
        labels[k] = int(v)

    warnings: list[str] = []
    aus = None
    if au_text is not None:
        aus = np.zeros((len(order), len(AU_IDS)), np.uint8)
        unknown_counts: Counter = Counter()
        unknown_where: dict[int, list[str]] = defaultdict(list)
        bad_where: list[str] = []
        for k, i in enumerate(order):
            vec, unknown, bad = parse_au_tokens(au_text[i])
            aus[k] = vec
            where = f"{au_file}:{au_lines[i]}"
            for au in unknown:
                unknown_counts[au] += 1
                if len(unknown_where[au]) < _MAX_EXAMPLES:
                    unknown_where[au].append(where)
            for token in bad:
                bad_where.append(f"{where}: {token!r} in {au_text[i]!r}")
        if bad_where and strict:
            raise DataError(
                f"{len(bad_where)} AU token(s) are not '<L|R|B|T><number>' (strict): "
                + "; ".join(summarise(bad_where, "tokens", 5))
            )
        if unknown_counts:
            listed = ", ".join(
                f"AU{au} x{n} (e.g. {', '.join(unknown_where[au])})" for au, n in sorted(unknown_counts.items())
            )
            warnings.append(
                f"{au_file}: {sum(unknown_counts.values())} AU mention(s) outside the 18 used "
                f"{list(AU_IDS)} were not encoded: {listed}"
            )
        if bad_where:
            warnings.append(
                f"{au_file}: {len(bad_where)} unparseable AU token(s) skipped: "
                + "; ".join(summarise(bad_where, "tokens", 10))
            )

    paths = _resolve(order, _image_index(root, images), part_file, part_lines, root)
    return from_files(
        paths,
        labels=labels,
        class_names=RAFCE_CLASSES,
        ids=order,
        splits=splits,
        origin=str(root),
        size=size,
        channels=channels,
        strict=strict,
        workers=workers,
        aus=aus,
        warnings=warnings,
        subject=subject,
    )


def load_rafdb(
    root: str | os.PathLike,
    *,
    size: int | None = None,
    channels: int | None = None,
    strict: bool = False,
    images: str | os.PathLike | None = None,
    workers: int | None = None,
    subject: object = None,
) -> tuple[FERData, LoadInfo]:
    """Load a RAF-DB basic folder (``list_patition_label.txt`` plus images)."""
    root = Path(root)
    label_file = root / RAFDB_LABEL_FILE
    if not label_file.is_file():
        label_file = root / "EmoLabel" / RAFDB_LABEL_FILE
    values, lines, order = _read_pairs(label_file)
    labels = np.empty(len(order), np.int64)
    splits: list[str] = []
    for k, i in enumerate(order):
        prefix = i.split("_", 1)[0].lower()
        if prefix not in ("train", "test"):
            raise DataError(f"{label_file}:{lines[i]}: image name {i!r} must start with 'train_' or 'test_'")
        splits.append(prefix)
        v = values[i]
        if not v.isdigit() or not 1 <= int(v) <= len(RAFDB_CLASSES):
            raise DataError(f"{label_file}:{lines[i]}: label {v!r} for {i!r} must be an integer 1..7")
        labels[k] = int(v) - 1
    paths = _resolve(order, _image_index(root, images), label_file, lines, root)
    return from_files(
        paths,
        labels=labels,
        class_names=RAFDB_CLASSES,
        ids=order,
        splits=splits,
        origin=str(root),
        size=size,
        channels=channels,
        strict=strict,
        workers=workers,
        subject=subject,
    )
