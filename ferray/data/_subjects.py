"""Subject ids from file names, so that fold plans keep each person in one fold.

Image-file sources (class folders, RAF-CE, RAF-DB) take a ``subject`` option:

``subject=auto`` (default)
    Try the naming schemes of :data:`SUBJECT_SCHEMES` in order; the first that matches
    *every* file name of the source gives the subjects. No scheme is applied to part of a
    source: a scheme that matches only some files is reported by ``ferray data check``.
``subject=none``
    No subject ids.
``subject=REGEX``
    A regular expression searched in each file name (or, when it contains ``/``, in the
    path relative to the dataset root, with ``/`` separators); its first group is the
    subject. It must match every file.

Sources with a label table (the FER2013 CSV) read a ``subject`` column when there is one.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ferray.errors import DataError

__all__ = ["SUBJECT_SCHEMES", "SubjectScheme", "detect_subjects", "resolve_subjects", "subjects_from_regex"]

_EXAMPLES = 3


@dataclass(frozen=True)
class SubjectScheme:
    """A FER dataset's file naming scheme with the subject in it.

    Attributes:
        name: short name (``"ck+"``), used in reports.
        title: what the scheme is, with an example file name and its subject.
        pattern: matched against the whole file name; group ``subject`` is the subject.
    """

    name: str
    title: str
    pattern: re.Pattern

    def subject(self, filename: str) -> str | None:
        m = self.pattern.fullmatch(filename)
        return None if m is None else m.group("subject").upper()


#: Naming schemes tried by ``subject=auto``, most specific first.
SUBJECT_SCHEMES: tuple[SubjectScheme, ...] = (
    SubjectScheme(
        "ck+",
        "CK+ (S010_004_00000017.png: subject S010, sequence 004, frame 17)",
        re.compile(r"(?P<subject>S\d{3})_\d{3}_\d+\.\w+"),
    ),
    SubjectScheme(
        "jaffe",
        "JAFFE (KA.HA1.29.tiff: subject KA, expression HA, take 1, image 29)",
        re.compile(r"(?P<subject>[A-Z]{2})\.[A-Z]{2}\d+\.\d+\.\w+"),
    ),
    SubjectScheme(
        "kdef",
        "KDEF (AF01ANS.JPG: session A, subject F01, expression AN, angle S)",
        re.compile(r"[AB](?P<subject>[FM]\d{2})(?:AF|AN|DI|HA|NE|SA|SU)(?:S|HL|HR|FL|FR)\.\w+", re.IGNORECASE),
    ),
    SubjectScheme(
        "s-prefix",
        "Oulu-CASIA/MMI style (S005_001.jpg, S005-anger.png: subject S005)",
        re.compile(r"(?P<subject>S\d+)(?:[_\-. ].*)?\.\w+", re.IGNORECASE),
    ),
)


def detect_subjects(filenames: list[str]) -> tuple[SubjectScheme | None, np.ndarray | None, dict[str, int]]:
    """Try :data:`SUBJECT_SCHEMES` on ``filenames`` (base names).

    Returns:
        ``(scheme, subjects, partial)``: the first scheme matching every name and the
        subject of each name (``None, None`` when none does), and for schemes that match
        some but not all names, how many they match.

    >>> scheme, subjects, _ = detect_subjects(["S010_004_00000017.png", "S011_001_00000003.png"])
    >>> scheme.name, subjects.tolist()
    ('ck+', ['S010', 'S011'])
    """
    partial: dict[str, int] = {}
    if not filenames:
        return None, None, partial
    for scheme in SUBJECT_SCHEMES:
        subjects = [scheme.subject(name) for name in filenames]
        matched = sum(s is not None for s in subjects)
        if matched == len(filenames):
            return scheme, np.asarray(subjects, dtype=object), partial
        if matched:
            partial[scheme.name] = matched
    return None, None, partial


def subjects_from_regex(pattern: str, filenames: list[str], relpaths: list[str]) -> np.ndarray:
    """The first group of ``pattern`` searched in each file name (or relative path if it has ``/``).

    Raises:
        DataError: the pattern does not compile, has no group, or misses some files.
    """
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise DataError(f"subject={pattern!r} is not a valid regular expression ({exc})") from None
    if rx.groups < 1:
        raise DataError(
            f"subject={pattern!r} has no group: put the subject in parentheses, e.g. subject=^([A-Za-z]+\\d+)_"
        )
    where, texts = ("relative path", relpaths) if "/" in pattern else ("file name", filenames)
    out = np.empty(len(texts), dtype=object)
    missed: list[str] = []
    for i, text in enumerate(texts):
        m = rx.search(text)
        if m is None or not m.group(1):
            missed.append(text)
        else:
            out[i] = m.group(1)
    if missed:
        what = "none" if len(missed) == len(texts) else f"{len(texts) - len(missed)}"
        raise DataError(
            f"subject={pattern!r} matched {what} of {len(texts)} {where}s (its first group must match every "
            f"file); unmatched e.g. {missed[:_EXAMPLES]}"
        )
    return out


def resolve_subjects(option: Any, paths: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray | None, dict[str, Any]]:
    """Subjects for an image-file source from its ``subject`` option.

    Args:
        option: ``None``/``"auto"``, ``"none"`` or a regular expression.
        paths: the image files (their base names are matched).
        ids: row ids, the paths relative to the dataset root.

    Returns:
        ``(subjects or None, report)``; the report (for ``ferray data check``) says where
        the subjects came from (``from``), how many there are (``count``) and which schemes
        matched only part of the files (``partial``).
    """
    names = [os.path.basename(str(p)) for p in paths]
    option = "auto" if option is None else str(option)
    if option.strip().lower() == "none":
        return None, {"from": "none (subject=none)"}
    if option.strip().lower() == "auto":
        scheme, subjects, partial = detect_subjects(names)
        report: dict[str, Any] = {"from": None, "partial": partial}
        if scheme is not None:
            report.update(
                {"from": f"file names: {scheme.title}", "scheme": scheme.name, "count": len(set(subjects.tolist()))}
            )
        return subjects, report
    relpaths = [str(i).replace(os.sep, "/") for i in ids]
    subjects = subjects_from_regex(option, names, relpaths)
    return subjects, {"from": f"subject={option}", "count": len(set(subjects.tolist()))}
