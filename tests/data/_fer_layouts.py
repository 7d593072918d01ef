"""Small folder layouts in the naming schemes of public FER sets (generated images only).

Each sequence (a subject showing one expression) is a few near-identical frames: one
smooth random pattern plus a little pixel noise, so the frames are near duplicates of
each other (pHash) and of nothing else.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

JAFFE_SUBJECTS = ("KA", "KL", "KM", "KR", "MK", "NA", "NM", "TM", "UY", "YM")
# expression code of each class folder name, per scheme
_JAFFE_CODES = {"anger": "AN", "happy": "HA", "sadness": "SA", "surprise": "SU", "disgust": "DI", "fear": "FE"}
_KDEF_CODES = {"anger": "AN", "happy": "HA", "sadness": "SA", "surprise": "SU", "disgust": "DI", "fear": "AF"}
_KDEF_ANGLES = ("S", "HL", "HR", "FL", "FR")


def sequence(rng: np.random.Generator, frames: int, size: int = 32) -> list[np.ndarray]:
    """``frames`` near-identical grey images (a smooth pattern, then +-2 noise per frame)."""
    base = np.kron(rng.integers(30, 226, (size // 4, size // 4)), np.ones((4, 4)))
    return [np.clip(base + rng.integers(-2, 3, base.shape), 0, 255).astype(np.uint8) for _ in range(frames)]


def _name(scheme: str, subject: int, cls: str, seq: int, frame: int) -> tuple[str, str]:
    """``(file name, expected subject)``."""
    if scheme == "ck+":
        return f"S{subject + 10:03d}_{seq + 1:03d}_{frame + 15:08d}.png", f"S{subject + 10:03d}"
    if scheme == "jaffe":
        initials = JAFFE_SUBJECTS[subject]
        return f"{initials}.{_JAFFE_CODES[cls]}{frame + 1}.{100 + 10 * seq + frame}.tiff", initials
    if scheme == "kdef":
        sex = "F" if subject % 2 else "M"
        who = f"{sex}{subject + 1:02d}"
        return f"A{who}{_KDEF_CODES[cls]}{_KDEF_ANGLES[frame]}.JPG", who
    if scheme == "s-prefix":
        return f"S{subject + 1:03d}_{cls}_{seq}{frame}.png", f"S{subject + 1:03d}"
    if scheme == "plain":  # no subject in the name
        return f"img_{subject:02d}_{cls}_{seq}{frame}.png", f"{subject:02d}"
    raise ValueError(scheme)


def scheme_folder(
    root: Path,
    scheme: str,
    *,
    subjects: int = 6,
    classes: tuple[str, ...] = ("anger", "happy", "sadness", "surprise"),
    frames: int = 3,
    seed: int = 0,
    test_subjects: int = 0,
    folder_names: dict[str, str] | None = None,
) -> dict[str, str]:
    """Write ``root[/split]/<class>/<file>`` in ``scheme``; return ``{relative path: subject}``.

    Every subject shows every class once, as a sequence of ``frames`` near-identical
    frames. The last ``test_subjects`` subjects go to ``test/`` (the others to
    ``train/``) when it is positive; ``folder_names`` renames class folders.
    """
    rng = np.random.default_rng(seed)
    expected: dict[str, str] = {}
    for s in range(subjects):
        split = ("test" if s >= subjects - test_subjects else "train") if test_subjects else None
        for seq, cls in enumerate(classes):
            folder = (folder_names or {}).get(cls, cls)
            for frame, pixels in enumerate(sequence(rng, frames)):
                name, subject = _name(scheme, s, cls, seq, frame)
                rel = f"{split}/{folder}/{name}" if split else f"{folder}/{name}"
                path = root / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels, "L").save(path)
                expected[rel] = subject
    return expected


def straddling(groups: np.ndarray, fold: np.ndarray) -> list[str]:
    """Groups (any labels) whose rows lie in more than one fold (the holdout counts as one)."""
    out = []
    for g in np.unique(groups):
        if len(set(fold[groups == g].tolist())) > 1:
            out.append(str(g))
    return out
