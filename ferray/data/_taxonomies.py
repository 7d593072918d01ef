"""Class taxonomies and the FACS action-unit prototype of each emotion.

:data:`TAXONOMIES` names the classes of the label sets ferray knows (FER2013's seven, FER+'s
eight, RAF-CE's fourteen compounds); :data:`EMOTION_AUS` gives each basic emotion's
EMFACS-style AU prototype (happiness = AU6+12, surprise = AU1+2+5+26, ...). A compound
emotion is made of two basic ones (Du, Tao & Martinez, 2014): :func:`emotion_components`.
"""

from __future__ import annotations

__all__ = ["TAXONOMIES", "EMOTION_AUS", "emotion_components"]

#: Class names of each taxonomy, in label order. ``basic7`` follows FER2013's labels,
#: ``basic8`` FER+'s and ``compound14`` RAF-CE's.
TAXONOMIES: dict[str, tuple[str, ...]] = {
    "basic7": ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"),
    "basic8": (
        "neutral",
        "happiness",
        "surprise",
        "sadness",
        "anger",
        "disgust",
        "fear",
        "contempt",
    ),
    "compound14": (
        "happily_surprised",
        "happily_disgusted",
        "sadly_fearful",
        "sadly_angry",
        "sadly_surprised",
        "sadly_disgusted",
        "fearfully_angry",
        "fearfully_surprised",
        "fearfully_disgusted",
        "angrily_surprised",
        "angrily_disgusted",
        "disgustedly_surprised",
        "happily_fearful",
        "happily_sad",
    ),
}

#: AU prototype of each basic emotion: ``(always, sometimes, right_side_only)`` AU numbers.
#: "Sometimes" AUs appear in half of the faces; right-side AUs act on the subject's right
#: half of the face only (the viewer's left).
EMOTION_AUS: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {
    "happy": ((6, 12), (25,), ()),
    "sad": ((1, 4, 15), (17,), ()),
    "surprise": ((1, 2, 5, 26), (25,), ()),
    "angry": ((4, 5, 7, 23), (24,), ()),
    "disgust": ((9, 10, 15), (17,), ()),
    "fear": ((1, 2, 4, 5, 7, 20, 26), (), ()),
    "contempt": ((), (), (12, 14)),
    "neutral": ((), (), ()),
}

_ALIASES = {
    "happiness": "happy",
    "sadness": "sad",
    "anger": "angry",
    "surprised": "surprise",
    "disgusted": "disgust",
    "fearful": "fear",
}
_ADVERBS = {
    "happily": "happy",
    "sadly": "sad",
    "fearfully": "fear",
    "angrily": "angry",
    "disgustedly": "disgust",
}


def emotion_components(name: str) -> tuple[str, ...]:
    """The basic emotions (keys of :data:`EMOTION_AUS`) that class ``name`` is made of.

    >>> emotion_components("happiness"), emotion_components("sadly_fearful")
    (('happy',), ('sad', 'fear'))
    """
    if name in EMOTION_AUS:
        return (name,)
    if name in _ALIASES:
        return (_ALIASES[name],)
    first, second = name.split("_")
    return (_ADVERBS[first], _ALIASES.get(second, second))
