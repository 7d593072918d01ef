"""Class-folder datasets: ``root/<class>/*.jpg`` or ``root/<split>/<class>/*.jpg``.

Split folder names map to the canonical splits: ``train``/``training`` -> ``train``;
``val``/``valid``/``validation``/``PublicTest`` -> ``val``; ``test``/``testing``/
``PrivateTest`` -> ``test``. Without split folders every row is ``train``.

Class folder names are mapped onto canonical classes (``1 - Happy`` -> ``happy``,
``anger`` -> ``angry``; see :func:`ferray.data._classes.map_class_names`); the ``classes``
option chooses another mapping (``verbatim``, a taxonomy, a mapping file or dict).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ferray.data._build import LoadInfo, from_files, summarise
from ferray.data._classes import map_class_names
from ferray.data._table import FERData
from ferray.data._taxonomies import TAXONOMIES
from ferray.errors import DataError
from ferray.imaging import IMAGE_EXTENSIONS

__all__ = ["FER2013_CLASSES", "SPLIT_ALIASES", "load_folder"]

#: FER2013's seven basic emotions in its label order (CSV labels 0..6).
FER2013_CLASSES: tuple[str, ...] = TAXONOMIES["basic7"]
#: Folder names (lower case) accepted for each canonical split.
SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "publictest": "val",
    "test": "test",
    "testing": "test",
    "privatetest": "test",
}
# Files that operating systems and tools leave behind; ignored without a word.
_JUNK = {"thumbs.db", "desktop.ini", "readme.md", "readme.txt", "provenance.txt", "license", "license.txt"}


def _subdirs(path: Path) -> list[Path]:
    return sorted(
        (Path(e.path) for e in os.scandir(path) if e.is_dir() and not e.name.startswith(".")),
        key=lambda p: p.name,
    )


def _scan_class(folder: Path, ignored: list[str]) -> list[str]:
    """Image files under ``folder`` (recursively, sorted); others go to ``ignored``."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or name.lower() in _JUNK:
                continue
            full = os.path.join(dirpath, name)
            if name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(full)
            else:
                ignored.append(full)
    return found


def is_class_folder_root(root: Path) -> bool:
    """Whether ``root`` has at least one sub-folder (the loader reports what is wrong)."""
    return root.is_dir() and bool(_subdirs(root))


def load_folder(
    root: str | os.PathLike,
    *,
    size: int | None = None,
    channels: int | None = None,
    strict: bool = False,
    workers: int | None = None,
    classes: Any = None,
    subject: Any = None,
) -> tuple[FERData, LoadInfo]:
    """Load a class-folder dataset; see the module docstring for the layout and ``classes``."""
    root = Path(root)
    class_option = classes
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    top = _subdirs(root)
    if not top:
        raise DataError(f"{root}: no class folders found (expected {root}/<class>/*.jpg)")
    split_dirs = [d for d in top if d.name.lower() in SPLIT_ALIASES]
    if split_dirs and len(split_dirs) != len(top):
        others = [d.name for d in top if d not in split_dirs]
        raise DataError(
            f"{root}: mixes split folders {[d.name for d in split_dirs]} with other folders {others}; "
            f"use either {root}/<class>/... or {root}/<split>/<class>/... with splits "
            f"{sorted(SPLIT_ALIASES)}"
        )
    layout: list[tuple[str, Path]] = (
        [(SPLIT_ALIASES[d.name.lower()], d) for d in split_dirs] if split_dirs else [("train", root)]
    )
    seen_split: dict[str, Path] = {}
    for split, d in layout:
        if split in seen_split:
            raise DataError(f"{root}: folders '{seen_split[split].name}' and '{d.name}' both map to split '{split}'")
        seen_split[split] = d

    ignored: list[str] = []
    per_split: dict[str, dict[str, list[str]]] = {}
    for split, d in layout:
        classes = _subdirs(d)
        if not classes:
            raise DataError(f"{d}: no class folders found (expected {d}/<class>/*.jpg)")
        per_split[split] = {}
        for c in classes:
            files = _scan_class(c, ignored)
            if not files:
                raise DataError(
                    f"{c}: class folder '{c.name}' holds no images (looked for {', '.join(IMAGE_EXTENSIONS)})"
                )
            per_split[split][c.name] = files
        for f in (e for e in os.scandir(d) if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS)):
            ignored.append(f.path)

    names = {split: set(classes) for split, classes in per_split.items()}
    all_names = set().union(*names.values())
    for split, have in names.items():
        if have != all_names:
            missing = sorted(all_names - have)
            raise DataError(
                f"{seen_split[split]}: split '{split}' lacks class folder(s) {missing} that other splits have "
                f"(classes per split: { {s: sorted(v) for s, v in names.items()} })"
            )
    if len(all_names) < 2:
        raise DataError(f"{root}: found a single class {sorted(all_names)}; a FER dataset needs at least 2")
    cmap = map_class_names(sorted(all_names), class_option, where=str(root))
    index = cmap.index
    paths: list[str] = []
    labels: list[int] = []
    splits: list[str] = []
    for split, _ in layout:
        for cname, files in per_split[split].items():
            paths.extend(files)
            labels.extend([index[cname]] * len(files))
            splits.extend([split] * len(files))
    ids = [Path(p).relative_to(root).as_posix() for p in paths]
    warnings: list[str] = []
    if ignored:
        exts = Counter(Path(p).suffix.lower() or "(none)" for p in ignored)
        warnings.append(
            f"ignored {len(ignored)} file(s) outside class folders or with unsupported extensions ({dict(exts)}), e.g. "
            + "; ".join(summarise(ignored, "files", 3))
        )
    if cmap.unknown and len(cmap.unknown) < len(cmap.class_names):
        warnings.append(
            f"class folder(s) {list(cmap.unknown)} match no canonical emotion and keep their names "
            f"(classes: {list(cmap.class_names)}); give classes=<mapping file> to map them"
        )
    data, info = from_files(
        paths,
        labels=np.asarray(labels, np.int64),
        class_names=cmap.class_names,
        ids=ids,
        splits=splits,
        origin=str(root),
        size=size,
        channels=channels,
        strict=strict,
        workers=workers,
        warnings=warnings,
        original_class_names=cmap.original if cmap.renamed else None,
        subject=subject,
    )
    info.classes = {"taxonomy": cmap.taxonomy, "renamed": cmap.renamed, "unknown": list(cmap.unknown)}
    return data, info
