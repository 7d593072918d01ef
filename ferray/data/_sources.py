"""One entry point from any supported dataset to a :class:`FERData`.

A source is a path, optionally with a scheme and a query string of options::

    data/fer2013.csv                           FER2013 CSV (detected by its header)
    data/fer2013new.csv?images=data/fer2013.csv  FER+ votes + FER2013 pixels
    ferplus:data/fer2013new.csv?images=data/fer2013.csv&mode=majority
    data/ferplus/                              folder holding fer2013.csv and fer2013new.csv
    data/RAF-CE/                               RAFCE_partition.txt + RAFCE_emolabel.txt (+ AUs)
    data/RAF-DB/                               list_patition_label.txt (RAF-DB basic)
    data/fer2013/                              class folders, optionally under train/val/test
    data/ck+/?subject=^(S[0-9]+)_&classes=basic8  options: subjects and class names (see below)
    prepared.parquet                           a file written by ``ferray data prepare``
    synthetic:basic7?count=500&seed=0          generated faces

A scheme (``parquet:``, ``fer2013:``, ``ferplus:``, ``rafce:``, ``rafdb:``, ``folder:``,
``synthetic:``) forces the format instead of detecting it.

Image-file sources (class folders, RAF-CE, RAF-DB) take ``subject=auto|none|REGEX``
(subject ids from file names; see :mod:`ferray.data._subjects`); class folders take
``classes=auto|verbatim|basic7|basic8|compound14|<mapping file>`` (class names mapped
onto canonical ones; see :func:`ferray.data._classes.map_class_names`). A FER2013 CSV
with a ``subject`` column reads its subjects from it.

Every source takes ``shuffle_labels=SEED``: the labels permuted across rows, a control
run that must stay at chance (:func:`shuffle_labels`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from ferray.data._build import LoadInfo, check_size_channels
from ferray.data._fer2013 import FERPLUS_HEADER, load_fer2013_csv, load_ferplus, read_csv_header
from ferray.data._folder import load_folder
from ferray.data._rafce import RAFCE_FILES, RAFDB_LABEL_FILE, load_rafce, load_rafdb
from ferray.data._table import FERData, read_parquet
from ferray.errors import DataError, closest

__all__ = ["SOURCE_KINDS", "load_source", "source_options", "shuffle_labels"]

# Options each kind accepts besides size, channels and strict, with their types.
_OPTIONS: dict[str, dict[str, type]] = {
    "parquet": {},
    "fer2013": {},
    "ferplus": {"images": str, "mode": str},
    "rafce": {"images": str, "workers": int, "subject": str},
    "rafdb": {"images": str, "workers": int, "subject": str},
    "folder": {"workers": int, "subject": str, "classes": str},
    "synthetic": {},  # checked by ferray.data._synthetic
}
#: Source kinds, also usable as ``kind:`` prefixes.
SOURCE_KINDS: tuple[str, ...] = tuple(_OPTIONS)
_COMMON: dict[str, type] = {"size": int, "channels": int, "strict": bool}
_FER2013_HEADER = ["emotion", "pixels", "Usage"]


def source_options(kind: str) -> list[str]:
    """Names of the options a source kind accepts (``size``, ``channels``, ``strict`` included)."""
    if kind == "synthetic":
        from ferray.data._synthetic import SYNTHETIC_DEFAULTS

        return sorted(SYNTHETIC_DEFAULTS)
    return sorted({*_COMMON, *_OPTIONS[kind]})


def _convert(kind: str, key: str, value: Any, where: str) -> Any:
    types = {**_COMMON, **_OPTIONS[kind]}
    if key not in types:
        valid = source_options(kind)
        raise DataError(
            f"option '{key}' is not accepted by a {kind} source ({where}); valid options: "
            f"{', '.join(valid)}{closest(key, valid)}"
        )
    want = types[key]
    if value is None or not isinstance(value, str):
        return value
    if want is bool:
        low = value.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise DataError(f"option {key}={value!r} ({where}) must be true or false")
    if want is int:
        try:
            return int(value)
        except ValueError:
            raise DataError(f"option {key}={value!r} ({where}) must be an integer") from None
    return value


def _split_source(source: str | os.PathLike) -> tuple[str | None, str, dict[str, str]]:
    """``(kind or None, path, query options)``."""
    text = os.fspath(source)
    kind = None
    head, colon, rest = text.partition(":")
    if colon and head.lower() in SOURCE_KINDS:
        kind, text = head.lower(), rest
    if kind == "synthetic" or "?" not in text or Path(text).exists():
        return kind, text, {}
    text, _, query = text.partition("?")
    options: dict[str, str] = {}
    # '+' stays a plus (regular expressions, 'ck+' paths) instead of form-encoding's space
    for key, value in parse_qsl(query.replace("+", "%2B"), keep_blank_values=True):
        if key in options:
            raise DataError(f"option '{key}' is given twice in '{os.fspath(source)}'")
        options[key] = value
    return kind, text, options


def _detect(path: Path, options: dict[str, Any]) -> str:
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            return "parquet"
        if suffix == ".csv":
            header = read_csv_header(path)
            lower = [h.lower() for h in header]
            if "emotion" in lower and "pixels" in lower:
                return "fer2013"
            if lower == [h.lower() for h in FERPLUS_HEADER]:
                return "ferplus"
            raise DataError(
                f"{path}:1: CSV header {header} is not one ferray reads; accepted: FER2013 "
                f"{_FER2013_HEADER} (Usage optional) or FER+ {list(FERPLUS_HEADER)}"
            )
        raise DataError(
            f"{path}: unsupported file type '{suffix or '(none)'}'; accepted files: .parquet (prepared), "
            ".csv (FER2013 or FER+), or a directory (class folders, RAF-CE, RAF-DB, FER+)"
        )
    if (path / RAFCE_FILES[0]).is_file() or (path / RAFCE_FILES[1]).is_file():
        return "rafce"
    if (path / RAFDB_LABEL_FILE).is_file() or (path / "EmoLabel" / RAFDB_LABEL_FILE).is_file():
        return "rafdb"
    if (path / "fer2013new.csv").is_file() and (path / "fer2013.csv").is_file():
        return "ferplus"
    if any(e.is_dir() and not e.name.startswith(".") for e in os.scandir(path)):
        return "folder"
    raise DataError(
        f"{path}: no dataset layout recognised; looked for {RAFCE_FILES[0]}/{RAFCE_FILES[1]} (RAF-CE), "
        f"{RAFDB_LABEL_FILE} (RAF-DB), fer2013.csv + fer2013new.csv (FER+) and class sub-folders "
        "(<root>/<class>/*.jpg or <root>/<split>/<class>/*.jpg)"
    )


def _load_parquet(path: Path, size: int | None, channels: int | None, **_: Any) -> tuple[FERData, LoadInfo]:
    data = read_parquet(path)
    h, w, c = data.image_shape
    if (size is not None and (h, w) != (size, size)) or (channels is not None and c != channels):
        raise DataError(
            f"{path}: prepared at {h}x{w}x{c}, but size={size} channels={channels} were asked for; "
            "prepare the source again at that size instead of resizing a prepared file"
        )
    info = LoadInfo()
    info.sizes[f"{w}x{h}"] = len(data)
    info.modes["L" if c == 1 else "RGB"] = len(data)
    return data, info


def _load_ferplus(path: Path, images: str | None = None, **kw: Any) -> tuple[FERData, LoadInfo]:
    if path.is_dir():
        votes, pixels = path / "fer2013new.csv", Path(images) if images else path / "fer2013.csv"
    else:
        votes = path
        pixels = Path(images) if images else path.parent / "fer2013.csv"
        if images is None and not pixels.is_file():
            raise DataError(
                f"{path} holds FER+ votes but no pixels; give the FER2013 CSV as "
                f"'{path}?images=path/to/fer2013.csv' (or images=... in Python)"
            )
    return load_ferplus(votes, pixels, **kw)


_LOADERS: dict[str, Callable[..., tuple[FERData, LoadInfo]]] = {
    "parquet": _load_parquet,
    "fer2013": load_fer2013_csv,
    "ferplus": _load_ferplus,
    "rafce": load_rafce,
    "rafdb": load_rafdb,
    "folder": load_folder,
}


def _load_synthetic(
    text: str, size: int | None, channels: int | None, options: dict[str, Any]
) -> tuple[FERData, LoadInfo]:
    from ferray.data._synthetic import SYNTHETIC_DEFAULTS, generate, parse_synthetic_spec

    kwargs = parse_synthetic_spec("synthetic:" + text)
    for key, value in options.items():
        if key == "strict":
            continue
        if key not in SYNTHETIC_DEFAULTS:
            raise DataError(
                f"option '{key}' is not accepted by a synthetic source; valid options: "
                f"{', '.join(sorted(SYNTHETIC_DEFAULTS))}{closest(key, SYNTHETIC_DEFAULTS)}"
            )
        kwargs[key] = value
    if size is not None:
        kwargs["size"] = size
    if channels is not None:
        kwargs["channels"] = channels
    data = generate(**kwargs)
    h, w, c = data.image_shape
    info = LoadInfo()
    info.sizes[f"{w}x{h}"] = len(data)
    info.modes["L" if c == 1 else "RGB"] = len(data)
    return data, info


def _load(
    source: str | os.PathLike,
    *,
    size: int | None = None,
    channels: int | None = None,
    strict: bool = False,
    **options: Any,
) -> tuple[FERData, LoadInfo, str]:
    """:func:`load_source` plus what the loader saw and the detected kind."""
    source, shuffle = _take_shuffle_labels(source, options)
    data, info, kind = _load_kind(source, size=size, channels=channels, strict=strict, **options)
    if shuffle is not None:
        data = shuffle_labels(data, shuffle)
    return data, info, kind


def _take_shuffle_labels(source: str | os.PathLike, options: dict[str, Any]) -> tuple[str, int | None]:
    """Remove ``shuffle_labels=SEED`` from a source's query string (or the options); its seed."""
    text = os.fspath(source)
    seed = options.pop("shuffle_labels", None)
    head, mark, query = text.partition("?")
    if mark:
        kept = []
        for part in query.split("&"):
            key, _, value = part.partition("=")
            if key == "shuffle_labels":
                seed = value
            elif part:
                kept.append(part)
        text = head + ("?" + "&".join(kept) if kept else "")
    if seed is None:
        return text, None
    try:
        return text, int(seed)
    except (TypeError, ValueError):
        raise DataError(f"option shuffle_labels={seed!r} (in '{os.fspath(source)}') must be an integer seed") from None


def shuffle_labels(data: FERData, seed: int) -> FERData:
    """``data`` with its targets (labels, soft labels, action units) permuted across rows by ``seed``.

    The label-randomisation control: a model trained on it can only reach chance on rows
    labelled the same way, so a run that learns on the real labels and stays at chance on
    these shows that its accuracy comes from pairing each image with its own label.
    """

    import numpy as np

    order = np.random.default_rng(seed).permutation(len(data))
    return dataclasses.replace(
        data,
        labels=data.labels[order],
        soft_labels=None if data.soft_labels is None else data.soft_labels[order],
        aus=None if data.aus is None else data.aus[order],
        origin=f"{data.origin} (labels shuffled, seed {seed})",
    )


def _load_kind(
    source: str | os.PathLike,
    *,
    size: int | None = None,
    channels: int | None = None,
    strict: bool = False,
    **options: Any,
) -> tuple[FERData, LoadInfo, str]:
    kind, text, query = _split_source(source)
    if kind == "synthetic":
        check_size_channels(size, channels)
        data, info = _load_synthetic(text, size, channels, options)
        return data, info, kind
    path = Path(text)
    if kind is None:
        kind = _detect(path, {**query, **options})
    elif not path.exists():
        raise DataError(f"{path}: no such file or directory")
    where = f"in '{os.fspath(source)}'"
    merged = {k: _convert(kind, k, v, where) for k, v in query.items()}
    merged.update({k: _convert(kind, k, v, "keyword argument") for k, v in options.items()})
    # keyword arguments override the query string
    for key, value in (("size", size), ("channels", channels), ("strict", strict or None)):
        if value is not None:
            merged[key] = value
    size, channels = merged.pop("size", None), merged.pop("channels", None)
    strict = bool(merged.pop("strict", False))
    check_size_channels(size, channels)
    data, info = _LOADERS[kind](path, size=size, channels=channels, strict=strict, **merged)
    return data, info, kind


def load_source(
    source: str | os.PathLike,
    *,
    size: int | None = None,
    channels: int | None = None,
    strict: bool = False,
    **options: Any,
) -> FERData:
    """Load any supported dataset (see the module docstring) into a :class:`FERData`.

    Args:
        source: a path, ``kind:path``, either with ``?key=value&...`` options, or a
            ``synthetic:...`` spec.
        size: square side in pixels; ``None`` keeps FER2013's 48 and otherwise takes the
            most common native side of the images (at most 224).
        channels: 1 or 3; ``None`` gives 1 when every probed image is grayscale.
        strict: unreadable images (and unparseable AU tokens) raise instead of being
            skipped and listed in ``FERData.warnings``.
        **options: source options (``images``, ``mode``, ``workers``, synthetic options);
            keyword arguments override the query string.

    Raises:
        DataError: the source is missing, unrecognised or malformed, or an option is
            unknown for its kind (the message lists the valid ones).

    >>> data = load_source("synthetic:basic7?count=14&seed=0")  # doctest: +SKIP
    """
    return _load(source, size=size, channels=channels, strict=strict, **options)[0]
