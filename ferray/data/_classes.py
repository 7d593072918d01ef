"""Canonical class names: folder and label names mapped onto ferray's taxonomies.

FER sets spell their classes differently (``anger``/``angry``, ``1 - Happy``,
``Surprised``, ``happily surprised``). :func:`canonical_class` maps one name onto an
emotion *concept* through synonyms, ignoring case, separators and a numbered prefix;
:func:`map_class_names` maps a dataset's names onto the taxonomies of
:data:`~ferray.data.TAXONOMIES`, in their order and spelling; :func:`match_classes`
pairs a model's classes with another dataset's by concept.

Concepts: the basic emotions ``angry disgust fear happy sad surprise neutral contempt``
and the 14 compound emotions of RAF-CE (``happily_surprised`` ...). A compound name is two
basic emotions, the first as an adverb or adjective, in either order
(``happily surprised``, ``Happily_Surprised``, ``surprised happy``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ferray.data._taxonomies import TAXONOMIES
from ferray.errors import DataError, closest

__all__ = [
    "BASIC_CONCEPTS",
    "ClassMap",
    "canonical_class",
    "map_class_names",
    "match_classes",
    "remap_labels",
]

#: The basic emotion concepts (basic7's spelling, plus contempt).
BASIC_CONCEPTS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "contempt")

# Words accepted for each basic concept (after lower-casing).
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "angry": ("angry", "anger", "angered", "mad", "angrily"),
    "disgust": ("disgust", "disgusted", "disgusting", "disgustedly"),
    "fear": ("fear", "fearful", "fearfully", "afraid", "scared", "fright", "frightened"),
    "happy": ("happy", "happiness", "happily", "joy", "joyful", "joyfully"),
    "sad": ("sad", "sadness", "sadly"),
    "surprise": ("surprise", "surprised", "surprisedly", "surprising"),
    "neutral": ("neutral", "neutrality", "neutrally"),
    "contempt": ("contempt", "contemptuous", "contemptuously"),
}
_WORD = {w: concept for concept, words in _SYNONYMS.items() for w in words}
# Words that name a basic emotion only as part of a compound.
_ADVERBS = {
    "angrily",
    "disgustedly",
    "fearfully",
    "happily",
    "sadly",
    "surprisedly",
    "joyfully",
    "neutrally",
    "contemptuously",
}
# basic7 spelling of each concept, and compound14's names keyed by their unordered concept pair
_BASIC7 = dict(zip(BASIC_CONCEPTS[:7], TAXONOMIES["basic7"]))
_BASIC8 = {
    "neutral": "neutral",
    "happy": "happiness",
    "surprise": "surprise",
    "sad": "sadness",
    "angry": "anger",
    "disgust": "disgust",
    "fear": "fear",
    "contempt": "contempt",
}
_COMPOUND: dict[frozenset[str], str] = {}
for _name in TAXONOMIES["compound14"]:
    _first, _second = _name.split("_")
    _COMPOUND[frozenset((_WORD[_first], _WORD[_second]))] = _name
_SPELLING: dict[str, dict[str, str]] = {
    "basic7": _BASIC7,
    "basic8": _BASIC8,
    "compound14": {n: n for n in TAXONOMIES["compound14"]},
}
_PREFIX = re.compile(r"^\s*[(\[]?\d+[)\]]?\s*[-_.:)]*\s*(?=\D)")
_SEPARATORS = re.compile(r"[\s\-_.]+")
MODES = ("auto", "verbatim", *TAXONOMIES)


def canonical_class(name: str) -> str | None:
    """The concept a class name stands for, or ``None`` when it is not a known emotion.

    >>> [canonical_class(n) for n in ["1 - Happy", "anger", "Surprised", "happily surprised", "cat"]]
    ['happy', 'angry', 'surprise', 'happily_surprised', None]
    """
    text = _PREFIX.sub("", str(name)).strip().lower()
    words = [w for w in _SEPARATORS.split(text) if w]
    if len(words) == 1:
        word = words[0]
        return None if word in _ADVERBS else _WORD.get(word)
    if len(words) == 2 and all(w in _WORD for w in words):
        concepts = {_WORD[w] for w in words}
        return _COMPOUND.get(frozenset(concepts)) if len(concepts) == 2 else None
    return None


def _taxonomy_of(concepts: set[str]) -> str | None:
    """The taxonomy whose order and spelling ``concepts`` take, or ``None`` for a mix."""
    basic = concepts & set(BASIC_CONCEPTS)
    if basic == concepts:
        return "basic8" if "contempt" in basic else "basic7"
    if not basic:
        return "compound14"
    return None


def _concept_order(concept: str, taxonomy: str | None) -> int:
    """Position of ``concept`` in ``taxonomy`` (``None``: basic7, then contempt, then compound14)."""
    if concept in BASIC_CONCEPTS:
        if taxonomy == "basic8":
            return TAXONOMIES["basic8"].index(_BASIC8[concept])
        return BASIC_CONCEPTS.index(concept)
    return 100 + TAXONOMIES["compound14"].index(concept)


@dataclass(frozen=True)
class ClassMap:
    """How a dataset's class names map onto class labels.

    Attributes:
        class_names: the classes, in label order.
        index: each original name's label.
        original: the original name of each class (aligned with ``class_names``).
        taxonomy: the taxonomy whose order and spelling were used, or ``None``.
        unknown: original names that matched no canonical class (kept as they are).
    """

    class_names: tuple[str, ...]
    index: dict[str, int]
    original: tuple[str, ...]
    taxonomy: str | None
    unknown: tuple[str, ...]

    @property
    def renamed(self) -> dict[str, str]:
        """Original names whose class name differs: ``{original: class name}``."""
        return {o: c for o, c in zip(self.original, self.class_names) if o != c}


def _read_mapping_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"classes={path}: cannot read the mapping file ({exc})") from None
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    elif suffix in (".yaml", ".yml"):
        import yaml

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise DataError(f"{path}: not valid YAML ({exc})") from None
    elif suffix in (".csv", ".txt", ".tsv"):
        doc = {}
        for line_no, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = [p.strip() for p in re.split(r"[,\t]", line)]
            if len(parts) != 2 or not all(parts):
                raise DataError(f"{path}:{line_no}: expected 'folder name,class name', found {line.strip()!r}")
            if parts[0] in doc:
                raise DataError(f"{path}:{line_no}: {parts[0]!r} is mapped twice")
            doc[parts[0]] = parts[1]
    else:
        raise DataError(
            f"classes={path}: a mapping file must be .json, .yaml/.yml or .csv (lines 'folder name,class name')"
        )
    if not isinstance(doc, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in doc.items()):
        raise DataError(f"{path}: a class mapping must map names (strings) to class names (strings)")
    return doc


def _parse_option(classes: Any) -> tuple[str, dict[str, str]]:
    """``(mode, overrides)`` from the ``classes`` option."""
    if classes is None:
        return "auto", {}
    if isinstance(classes, Mapping):
        return "auto", {str(k): str(v) for k, v in classes.items()}
    text = str(classes).strip()
    if text.lower() in MODES:
        return text.lower(), {}
    path = Path(text).expanduser()
    if path.suffix and (path.is_file() or os.sep in text or "/" in text):
        if not path.is_file():
            raise DataError(f"classes={text!r}: no such mapping file")
        return "auto", _read_mapping_file(path)
    raise DataError(
        f"classes={text!r} is not accepted: use one of {list(MODES)}, a mapping file "
        f"(.json, .yaml or .csv) or, in Python, a dict{closest(text.lower(), MODES)}"
    )


def map_class_names(names: Sequence[str], classes: Any = None, *, where: str = "") -> ClassMap:
    """Map a dataset's class names (folder names) onto canonical classes.

    Args:
        names: the names as found.
        classes: ``None``/``"auto"``: names that match a concept take the canonical name,
            in the canonical order (basic7, or basic8 when contempt is present, then
            compound14); unknown names are kept as they are, after the known ones.
            ``"verbatim"``: the names as they are, sorted. ``"basic7"``/``"basic8"``/
            ``"compound14"``: every name must map into that taxonomy. A dict or a mapping
            file (``.json``/``.yaml``/``.csv``) gives some names' classes explicitly (the
            class names given are themselves canonicalised when they can be); the other
            names are mapped automatically.
        where: the dataset, for error messages.

    Raises:
        DataError: two names map to one class; a name does not fit the requested
            taxonomy; a mapping names a class folder that does not exist.

    >>> m = map_class_names(["1 - Happy", "2 - Sad", "Surprised"])
    >>> m.class_names, m.taxonomy
    (('happy', 'sad', 'surprise'), 'basic7')
    """
    names = list(names)
    prefix = f"{where}: " if where else ""
    mode, overrides = _parse_option(classes)
    if mode == "verbatim":
        ordered = tuple(sorted(names))
        return ClassMap(ordered, {n: i for i, n in enumerate(ordered)}, ordered, None, ())
    stray = [k for k in overrides if k not in names]
    if stray:
        raise DataError(
            f"{prefix}the class mapping names {stray}, which are not among the class names found "
            f"{sorted(names)}{closest(stray[0], names)}"
        )
    concept: dict[str, str | None] = {}
    target: dict[str, str] = {}
    for name in names:
        wanted = overrides.get(name, name)
        concept[name] = canonical_class(wanted)
        target[name] = wanted
    known = {c for c in concept.values() if c is not None}
    taxonomy = mode if mode in TAXONOMIES else _taxonomy_of(known)
    if mode in TAXONOMIES:
        spelling = _SPELLING[mode]
        bad = [n for n in names if concept[n] not in spelling]
        if bad:
            raise DataError(
                f"{prefix}class name(s) {bad} do not map onto classes={mode} {list(TAXONOMIES[mode])}; "
                "give a mapping file or dict for them, or use classes=auto"
            )
    final: dict[str, str] = {}
    for name in names:
        c = concept[name]
        if c is None:
            final[name] = target[name]
        elif taxonomy is not None:
            final[name] = _SPELLING[taxonomy][c]
        else:  # basic and compound classes together: basic7 spelling for the basic ones
            final[name] = _BASIC7.get(c, c)
    by_class: dict[str, list[str]] = {}
    for name in names:
        by_class.setdefault(final[name], []).append(name)
    merged = {c: ns for c, ns in by_class.items() if len(ns) > 1}
    if merged:
        c, ns = next(iter(merged.items()))
        raise DataError(
            f"{prefix}class names {sorted(ns)} all map to class {c!r}; each class needs exactly one "
            f"name (rename or remove one of them, give a mapping, or use classes=verbatim to keep "
            f"the names as they are)"
        )
    known_names = sorted(
        (n for n in names if concept[n] is not None), key=lambda n: _concept_order(concept[n], taxonomy)
    )
    unknown = sorted(n for n in names if concept[n] is None)
    original = tuple(known_names + unknown)
    class_names = tuple(final[n] for n in original)
    return ClassMap(
        class_names, {n: i for i, n in enumerate(original)}, original, taxonomy if known else None, tuple(unknown)
    )


def _concepts(classes: Sequence[str], side: str) -> dict[str, str]:
    """``{concept or folded name: name}``; two names of one concept are an error."""
    out: dict[str, str] = {}
    for name in classes:
        key = canonical_class(name) or str(name).strip().lower()
        if key in out:
            raise DataError(
                f"{side} classes {list(classes)} are ambiguous: {out[key]!r} and {name!r} both mean {key!r}"
            )
        out[key] = name
    return out


def match_classes(model_classes: Sequence[str], data_classes: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Pair a dataset's classes with a model's by canonical concept.

    Names are compared after :func:`canonical_class` (``anger`` = ``angry``,
    ``happiness`` = ``happy``); names that are no known emotion match case-insensitively.

    Returns:
        ``(mapping, unknown)``: ``{data class: model class}`` for the classes both have, and
        the data classes the model lacks (in data order), e.g. ``contempt`` for a FER2013
        model scored on FER+.

    Raises:
        DataError: the two share no class, or one side has two names for one concept.

    >>> match_classes(["angry", "happy", "neutral"], ["neutral", "happiness", "anger", "contempt"])
    ({'neutral': 'neutral', 'happiness': 'happy', 'anger': 'angry'}, ['contempt'])
    """
    model = _concepts(model_classes, "model")
    data = _concepts(data_classes, "data")
    mapping = {name: model[key] for key, name in data.items() if key in model}
    unknown = [name for key, name in data.items() if key not in model]
    if not mapping:
        raise DataError(
            f"the data's classes {list(data_classes)} share no class with the model's {list(model_classes)}"
        )
    return mapping, unknown


def remap_labels(labels: np.ndarray, data_classes: Sequence[str], model_classes: Sequence[str]) -> np.ndarray:
    """Data labels as model class indices (``-1`` for classes the model lacks); see :func:`match_classes`."""
    mapping, _ = match_classes(model_classes, data_classes)
    model_index = {n: i for i, n in enumerate(model_classes)}
    table = np.asarray([model_index[mapping[n]] if n in mapping else -1 for n in data_classes], np.int64)
    return table[np.asarray(labels, np.int64)]
