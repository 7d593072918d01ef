"""ferray's embedded dataset: synthetic faces whose expressions are driven by FACS action units.

Nothing is downloaded. A parametric renderer draws each face with vectorised numpy from
implicit shapes (ellipses, parabolic brows, lids and lips) evaluated on the pixel grid of
the requested size, with a one-pixel smooth edge for antialiasing. Every face has

* an *identity* (face oval and chin taper, skin tone, hair, eye size and spacing, iris
  colour, brow thickness and arch, nose and mouth size) shared by all images of its subject,
* a *pose* (in-plane rotation, yaw-like shift with asymmetric horizontal scaling,
  translation, scale), *lighting* (directional gradient, brightness, contrast) and noise,
* an optional *occlusion* (a hand over the mouth, a dark glasses bar, or a grey block),
* action-unit intensities in ``[0, 1]`` that move the features: AU1/AU2 raise the inner /
  outer brows, AU4 lowers and draws them together, AU5 widens the eyes, AU6 raises the
  cheeks, AU7 tightens the lids, AU9 wrinkles the nose, AU10 raises the upper lip, AU12
  pulls the lip corners up, AU14 dimples, AU15 pulls the corners down, AU17 raises the
  chin, AU20 stretches the lips, AU23/AU24 tighten and press them, AU25 parts them, AU26
  drops the jaw, AU43 closes the eyes and AU45 blinks.

An emotion is an EMFACS-style AU prototype (happiness = AU6+12, surprise = AU1+2+5+26, ...);
compound emotions take the union of their two components (Du, Tao & Martinez, 2014).
Prototype AUs are dropped and extra AUs added at random, more often as ``difficulty``
grows, so a label never fully determines the face. Each row carries its label and its
18-dim AU multi-hot vector in :data:`~ferray.data.AU_IDS` order.

A source string selects the data, e.g. ``synthetic:basic7?count=1400&size=48&seed=0``;
see :func:`parse_synthetic_spec` for the options.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ferray.data._table import AU_IDS, FERData
from ferray.errors import DataError, closest

__all__ = [
    "TAXONOMIES",
    "EMOTION_AUS",
    "SYNTHETIC_DEFAULTS",
    "generate",
    "parse_synthetic_spec",
    "synthetic_spec",
    "render_grid",
]

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

#: Default generation options; ``count=None`` means 200 images per class.
SYNTHETIC_DEFAULTS: dict[str, Any] = {
    "count": None,
    "size": 48,
    "channels": 1,
    "seed": 0,
    "difficulty": 0.5,
    "subjects": 50,
    "occlusion": 0.0,
    "test_fraction": 0.0,
}
_PER_CLASS_DEFAULT = 200
_MIN_SIZE, _MAX_SIZE = 48, 224
_MAX_COUNT = 5_000_000
_ACCEPTED = {
    "count": f"an integer in 1..{_MAX_COUNT}",
    "size": f"an integer in {_MIN_SIZE}..{_MAX_SIZE}",
    "channels": "1 (grey) or 3 (colour)",
    "seed": "an integer >= 0",
    "difficulty": "a number in [0, 1]",
    "subjects": "an integer >= 1",
    "occlusion": "a number in [0, 1]",
    "test_fraction": "a number in [0, 1)",
}
_BATCH = 64  # images rendered together; fixed so that output never depends on it varying

# AUs the renderer understands (AU14 is drawn but is not one of the 18 in AU_IDS).
_RENDER_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 24, 25, 26, 43, 45)
_COL = {au: i for i, au in enumerate(_RENDER_AUS)}
_VEC_COLS = np.array([_COL[au] for au in AU_IDS])
# AUs that may be added at random as distractors (AU43 is left to the blink distractor).
_EXTRA_AUS = np.array([_COL[au] for au in AU_IDS if au not in (43, 45)])
_FACE_SCALE = 1.18  # face units -> image units at pose scale 1
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


# --------------------------------------------------------------------------- taxonomy


def _components(name: str) -> tuple[str, ...]:
    if name in EMOTION_AUS:
        return (name,)
    if name in _ALIASES:
        return (_ALIASES[name],)
    first, second = name.split("_")
    return (_ADVERBS[first], _ALIASES.get(second, second))


def _class_table(taxonomy: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class: which rendered AUs are always / sometimes / right-only present."""
    names = TAXONOMIES[taxonomy]
    always = np.zeros((len(names), len(_RENDER_AUS)), bool)
    sometimes = np.zeros_like(always)
    right = np.zeros_like(always)
    for k, name in enumerate(names):
        for emotion in _components(name):
            a, s, r = EMOTION_AUS[emotion]
            always[k, [_COL[x] for x in a]] = True
            sometimes[k, [_COL[x] for x in s]] = True
            right[k, [_COL[x] for x in r]] = True
    sometimes &= ~always
    return always, sometimes, right


# --------------------------------------------------------------------------- options


def _check_options(
    taxonomy: str,
    count: int | None,
    size: int,
    channels: int,
    seed: int,
    difficulty: float,
    subjects: int,
    occlusion: float,
    test_fraction: float,
) -> int:
    """Validate generation options; return the resolved count."""
    if taxonomy not in TAXONOMIES:
        raise DataError(
            f"synthetic taxonomy '{taxonomy}' is unknown; valid taxonomies: "
            f"{', '.join(TAXONOMIES)}{closest(taxonomy, TAXONOMIES)}"
        )
    if count is None:
        count = _PER_CLASS_DEFAULT * len(TAXONOMIES[taxonomy])

    def integer(name: str, value: object, low: int, high: int | None) -> None:
        ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
        if not ok or value < low or (high is not None and value > high):
            raise DataError(f"synthetic option {name}={value!r} is not accepted; expected {_ACCEPTED[name]}")

    def real(name: str, value: object, low: float, high: float, high_open: bool = False) -> None:
        ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
        if not ok or math.isnan(value) or not (low <= value < high if high_open else low <= value <= high):
            raise DataError(f"synthetic option {name}={value!r} is not accepted; expected {_ACCEPTED[name]}")

    integer("count", count, 1, _MAX_COUNT)
    integer("size", size, _MIN_SIZE, _MAX_SIZE)
    if isinstance(channels, bool) or channels not in (1, 3):
        raise DataError(f"synthetic option channels={channels!r} is not accepted; expected {_ACCEPTED['channels']}")
    integer("seed", seed, 0, None)
    real("difficulty", difficulty, 0.0, 1.0)
    integer("subjects", subjects, 1, None)
    real("occlusion", occlusion, 0.0, 1.0)
    real("test_fraction", test_fraction, 0.0, 1.0, high_open=True)
    if test_fraction > 0 and subjects < 2:
        raise DataError(
            f"synthetic option test_fraction={test_fraction} holds out whole subjects and "
            f"needs subjects >= 2, got subjects={subjects}"
        )
    return int(count)


def synthetic_spec(taxonomy: str = "basic7", **options: Any) -> str:
    """The canonical source string for these options (every option spelled out).

    >>> synthetic_spec("basic7", count=100)
    'synthetic:basic7?count=100&size=48&channels=1&seed=0&difficulty=0.5&subjects=50&occlusion=0&test_fraction=0'
    """
    unknown = sorted(set(options) - set(SYNTHETIC_DEFAULTS))
    if unknown:
        raise DataError(
            f"synthetic option '{unknown[0]}' is unknown; valid options: "
            f"{', '.join(SYNTHETIC_DEFAULTS)}{closest(unknown[0], SYNTHETIC_DEFAULTS)}"
        )
    opts = {**SYNTHETIC_DEFAULTS, **options}
    opts["count"] = _check_options(taxonomy, **opts)
    parts = "&".join(f"{k}={opts[k]:g}" if isinstance(opts[k], float) else f"{k}={opts[k]}" for k in SYNTHETIC_DEFAULTS)
    return f"synthetic:{taxonomy}?{parts}"


def parse_synthetic_spec(spec: str) -> dict[str, Any]:
    """Parse ``synthetic:<taxonomy>?opt=value&...`` into keyword arguments of :func:`generate`.

    ``synthetic:`` alone means ``basic7`` with the defaults. Options (all optional):

    * ``count``: number of images (default 200 per class),
    * ``size``: side in pixels, 48..224 (default 48),
    * ``channels``: 1 (grey) or 3 (colour) (default 1),
    * ``seed``: integer >= 0 (default 0),
    * ``difficulty``: 0..1; lower AU intensities, more pose, light and noise variance and
      more AU randomisation as it grows (default 0.5),
    * ``subjects``: number of identities (default 50),
    * ``occlusion``: probability of an occluder per image, 0..1 (default 0),
    * ``test_fraction``: share of subjects held out as split ``test``, [0, 1) (default 0).

    >>> parse_synthetic_spec("synthetic:basic7?count=500&difficulty=0.3")["count"]
    500
    """
    text = str(spec).strip()
    head, _, query = text.partition("?")
    scheme, colon, taxonomy = head.partition(":")
    if scheme.lower() != "synthetic" or (not colon and head != "synthetic"):
        raise DataError(f"'{spec}' is not a synthetic source; expected 'synthetic:<taxonomy>?opt=value&...'")
    taxonomy = taxonomy.strip() or "basic7"
    if taxonomy not in TAXONOMIES:
        raise DataError(
            f"synthetic taxonomy '{taxonomy}' in '{spec}' is unknown; valid taxonomies: "
            f"{', '.join(TAXONOMIES)}{closest(taxonomy, TAXONOMIES)}"
        )
    kwargs: dict[str, Any] = {"taxonomy": taxonomy}
    for item in filter(None, query.split("&")):
        key, eq, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if key not in SYNTHETIC_DEFAULTS:
            raise DataError(
                f"synthetic option '{key}' in '{spec}' is unknown; valid options: "
                f"{', '.join(SYNTHETIC_DEFAULTS)}{closest(key, SYNTHETIC_DEFAULTS)}"
            )
        if key in kwargs:
            raise DataError(f"synthetic option '{key}' is given twice in '{spec}'")
        if not eq or not raw:
            raise DataError(f"synthetic option '{key}' in '{spec}' has no value; write {key}=<value>")
        kind = float if isinstance(SYNTHETIC_DEFAULTS[key], float) else int
        try:
            kwargs[key] = kind(raw)
        except ValueError:
            raise DataError(
                f"synthetic option {key}={raw!r} in '{spec}' is not accepted; expected {_ACCEPTED[key]}"
            ) from None
    opts = {**SYNTHETIC_DEFAULTS, **{k: v for k, v in kwargs.items() if k != "taxonomy"}}
    try:
        _check_options(taxonomy, **opts)
    except DataError as exc:
        raise DataError(f"{exc} (in '{spec}')") from None
    return kwargs


# --------------------------------------------------------------------------- sampling


def _sample_identities(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    u = rng.uniform
    tone = u(0, 1, n)
    dark, light = np.array([82, 54, 40.0]), np.array([242, 208, 184.0])
    skin = dark + tone[:, None] * (light - dark)
    skin *= u(0.95, 1.05, (n, 3))
    hair_palette = np.array([[28, 22, 20], [62, 42, 30], [105, 72, 45], [185, 150, 100], [150, 148, 145.0]])
    hair = hair_palette[rng.choice(5, n, p=[0.35, 0.3, 0.15, 0.12, 0.08])] * u(0.85, 1.15, (n, 1))
    iris_palette = np.array([[72, 46, 30], [70, 100, 140], [78, 100, 68], [38, 28, 22.0]])
    iris = iris_palette[rng.choice(4, n, p=[0.45, 0.2, 0.1, 0.25])]
    return {
        "skin": skin,
        "hair": np.clip(hair, 0, 255),
        "iris": iris,
        "fw": u(0.56, 0.67, n),
        "fht": u(0.74, 0.84, n),
        "fhb": u(0.80, 0.90, n),
        "taper": u(0.12, 0.32, n),
        "hry": u(0.86, 1.0, n),
        "hrx": u(1.1, 1.25, n),
        "hbot": u(-0.05, 0.55, n),
        "ex": u(0.22, 0.29, n),
        "ey": u(-0.13, -0.05, n),
        "ew": u(0.10, 0.13, n),
        "eh": u(0.036, 0.046, n),
        "ri": u(0.034, 0.042, n),
        "bth": u(0.016, 0.03, n),
        "bgap": u(0.105, 0.14, n),
        "bw": u(0.12, 0.16, n),
        "arch": u(0.015, 0.045, n),
        "ny": u(0.2, 0.27, n),
        "nw": u(0.045, 0.065, n),
        "my": u(0.46, 0.54, n),
        "mw": u(0.14, 0.19, n),
        "lu": u(0.022, 0.036, n),
        "ll": u(0.028, 0.044, n),
    }


def _sample_aus(
    labels: np.ndarray, taxonomy: str, difficulty: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """AU intensities ``(n, n_render_aus, 2)`` (subject's left, right) and the 18-AU multi-hot."""
    n, m = len(labels), len(_RENDER_AUS)
    always, sometimes, right = (t[labels] for t in _class_table(taxonomy))
    present = always | (sometimes & (rng.random((n, m)) < 0.5)) | right
    p_drop = 0.03 + 0.22 * difficulty
    drop = present & (rng.random((n, m)) < p_drop)
    # Never drop every AU of an expressive face: keep one at random.
    emptied = present.any(1) & ~(present & ~drop).any(1)
    keep = np.argmax(np.where(present, rng.random((n, m)), -1.0), axis=1)
    drop[np.flatnonzero(emptied), keep[emptied]] = False
    present &= ~drop
    add = rng.random(n) < 0.04 + 0.3 * difficulty
    extra = _EXTRA_AUS[rng.integers(0, len(_EXTRA_AUS), n)]
    present[np.flatnonzero(add), extra[add]] = True
    blink = rng.random(n) < 0.02 + 0.06 * difficulty
    present[blink, _COL[45]] = True
    low = float(np.clip(0.85 - 0.75 * difficulty, 0.1, 0.85))
    level = rng.uniform(low, 1.0, (n, m))
    level[:, _COL[45]] = rng.uniform(0.75, 1.0, n)
    level = np.where(present, level, 0.0).astype(np.float32)
    both = np.where(right & ~(add[:, None] & (np.arange(m) == extra[:, None])), 0.0, level)
    intensity = np.stack([both, level], axis=2).astype(np.float32)
    return intensity, present[:, _VEC_COLS].astype(np.uint8)


def _sample_pose(n: int, difficulty: float, occlusion: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    d = difficulty
    norm = lambda sd, lim=2.5: np.clip(rng.standard_normal(n), -lim, lim) * sd  # noqa: E731
    bg_tone = rng.uniform(25, 225, n)
    bg = bg_tone[:, None] * rng.uniform(0.85, 1.15, (n, 3))
    return {
        "rot": np.deg2rad(norm(2.0 + 10.0 * d)),
        "tx": norm(0.02 + 0.06 * d),
        "ty": norm(0.02 + 0.05 * d),
        "scale": np.exp(norm(0.03 + 0.07 * d)),
        "yaw": norm(0.04 + 0.3 * d),
        "gaze": norm(0.008),
        "gain": 1.0 + norm(0.04 + 0.12 * d),
        "lx": norm(0.03 + 0.17 * d),
        "ly": norm(0.02 + 0.1 * d),
        "contrast": np.exp(norm(0.04 + 0.16 * d)),
        "noise": rng.uniform(1.0, 2.0 + 10.0 * d, n),
        "bg": np.clip(bg, 0, 255),
        "bgx": norm(20.0),
        "bgy": norm(20.0),
        "occ": (rng.random(n) < occlusion).astype(np.float32),
        "occ_kind": rng.integers(0, 3, n).astype(np.float32),
        "occ_x": rng.uniform(-0.4, 0.4, n),
        "occ_y": rng.uniform(-0.4, 0.4, n),
        "occ_w": rng.uniform(0.2, 0.45, n),
        "occ_h": rng.uniform(0.15, 0.35, n),
        "noise_seed": rng.integers(0, 2**63 - 1, n),
    }


# --------------------------------------------------------------------------- rendering


class _Canvas:
    """One batch of images being painted, with the face-space coordinates of every pixel."""

    def __init__(self, p: dict[str, np.ndarray], bg: np.ndarray, size: int, channels: int) -> None:
        f32 = np.float32
        self.p, self.size, self.channels = p, size, channels
        g = (np.arange(size, dtype=f32) + 0.5) * f32(2.0 / size) - f32(1.0)
        self.x, self.y = g[None, None, :], g[None, :, None]
        sc = p["scale"] * f32(_FACE_SCALE)
        c, s = np.cos(p["rot"]) / sc, np.sin(p["rot"]) / sc
        tx, ty = p["tx"], p["ty"]
        # image -> face: u = (c (x - tx) + s (y - ty)), v = (-s (x - tx) + c (y - ty)), scaled
        self.u = (c * self.x + s * self.y) - (c * tx + s * ty)
        self.v = (c * self.y - s * self.x) - (c * ty - s * tx)
        # features: shifted towards the turn and squeezed on the far side (a cheap yaw)
        yaw = p["yaw"]
        uf = self.u - f32(0.1) * yaw
        self.uf = uf + f32(0.3) * yaw * np.abs(uf)
        self.au = np.abs(self.uf)
        self.au0 = np.abs(self.u)
        self.ipx = sc * f32(size / 2.0)  # 1 / (pixel size in face units)
        self.img = np.empty((len(sc), channels, size, size), f32)  # channels first: fast broadcasting
        self.img[...] = bg
        self.img += (p["bgx"] * self.x + p["bgy"] * self.y)[:, None]
        self.max_yaw = float(np.abs(yaw).max())

    def region(self, u0: float, u1: float, v0: float, v1: float) -> tuple[slice, slice] | None:
        """Pixel rows and columns that hold the face-space box in every image of the batch."""
        p = self.p
        m = 0.1 * self.max_yaw + 0.3 * self.max_yaw * max(abs(u0), abs(u1))
        uu = np.array([u0 - m, u1 + m, u0 - m, u1 + m])[None]
        vv = np.array([v0, v0, v1, v1])[None]
        sc = (p["scale"] * _FACE_SCALE)[:, 0, 0, None]
        c, s = np.cos(p["rot"])[:, 0, 0, None], np.sin(p["rot"])[:, 0, 0, None]
        xs = sc * (c * uu - s * vv) + p["tx"][:, 0, 0, None]
        ys = sc * (s * uu + c * vv) + p["ty"][:, 0, 0, None]
        n = self.size

        def span(a: np.ndarray) -> tuple[int, int]:
            lo = int(np.floor((a.min() + 1) * n / 2)) - 2
            hi = int(np.ceil((a.max() + 1) * n / 2)) + 2
            return max(lo, 0), min(hi, n)

        (c0, c1), (r0, r1) = span(xs), span(ys)
        if c0 >= c1 or r0 >= r1:
            return None
        return slice(r0, r1), slice(c0, c1)

    def cov(self, d: np.ndarray, soft: float = 1.0) -> np.ndarray:
        """Coverage in [0, 1] of a signed distance (face units, negative inside)."""
        ipx = self.ipx if soft == 1.0 else self.ipx / np.float32(soft)
        out = np.multiply(d, -ipx)
        out += np.float32(0.5)
        return np.clip(out, 0.0, 1.0, out=out)

    def paint(self, region: tuple[slice, slice], cover: np.ndarray, color: np.ndarray) -> None:
        view = self.img[:, :, region[0], region[1]]
        view += cover[:, None] * (color - view)


def _side(right: np.ndarray, left_value: np.ndarray, right_value: np.ndarray) -> np.ndarray:
    """Per-pixel choice of a per-image parameter for the subject's left or right half."""
    if np.array_equal(left_value, right_value):
        return left_value
    return np.where(right, right_value, left_value)


def _render_batch(
    ident: dict[str, np.ndarray],
    intensity: np.ndarray,
    pose: dict[str, np.ndarray],
    size: int,
    channels: int,
) -> np.ndarray:
    f32 = np.float32
    col = lambda a: a.astype(f32)[:, None, None]  # noqa: E731
    p = {k: col(v) for k, v in {**ident, **pose}.items() if v.ndim == 1}
    colors = {k: v.astype(f32) for k, v in {**ident, **pose}.items() if v.ndim == 2}
    if channels == 1:
        colors = {k: v @ _LUMA for k, v in colors.items()}
        colors = {k: v[:, None] for k, v in colors.items()}
    colors = {k: v[:, :, None, None] for k, v in colors.items()}

    def const(rgb: tuple[float, float, float], grey: float) -> np.ndarray:
        return np.array(rgb if channels == 3 else (grey,), f32)[:, None, None]

    skin, hair = colors["skin"], colors["hair"]
    lip = skin * const((0.86, 0.6, 0.62), 0.68)
    brow = np.minimum(hair * f32(0.85), skin * f32(0.5))
    lash = np.minimum(hair * f32(0.6), skin * f32(0.35))
    shadow = skin * f32(0.55)
    mouth_in = np.broadcast_to(const((70, 24, 30), 39), skin.shape)
    teeth = np.broadcast_to(const((232, 226, 212), 226), skin.shape)
    sclera = np.broadcast_to(const((240, 236, 230), 236), skin.shape)
    cheek = np.minimum(skin * const((1.12, 1.0, 1.0), 1.08), f32(255))

    al, ar = intensity[:, :, 0], intensity[:, :, 1]
    A = {au: col(np.maximum(al[:, i], ar[:, i])) for i, au in enumerate(_RENDER_AUS)}
    L = {au: col(al[:, _COL[au]]) for au in (12, 14)}
    R = {au: col(ar[:, _COL[au]]) for au in (12, 14)}

    cv = _Canvas(p, colors["bg"], size, channels)
    u, v, uf, au, au0 = cv.u, cv.v, cv.uf, cv.au, cv.au0

    # hair (behind the head)
    reg = cv.region(-1.2, 1.2, -1.1, 0.7)
    if reg:
        uu, vv = u[:, reg[0], reg[1]], v[:, reg[0], reg[1]]
        rx, ry = p["hrx"] * p["fw"], p["hry"]
        f = np.square(uu / rx) + np.square((vv + f32(0.1)) / ry)
        d = np.maximum((f - f32(1)) * (f32(0.5) * ry), vv - p["hbot"])
        cv.paint(reg, cv.cov(d), hair)
    # neck and ears
    reg = cv.region(-0.8, 0.8, -0.2, 1.1)
    if reg:
        uu, vv, aa = u[:, reg[0], reg[1]], v[:, reg[0], reg[1]], au0[:, reg[0], reg[1]]
        d = np.maximum(aa - f32(0.5) * p["fw"], f32(0.4) - vv)
        cv.paint(reg, cv.cov(d), skin * f32(0.8))
        f = np.square((aa - p["fw"]) * f32(1 / 0.075)) + np.square((vv - f32(0.02)) * f32(1 / 0.15))
        cv.paint(reg, cv.cov((f - f32(1)) * f32(0.04)), skin * f32(0.88))
    # face oval, egg-shaped, chin lowered by the jaw drop
    reg = cv.region(-0.75, 0.75, -0.9, 1.05)
    if reg:
        uu, vv = u[:, reg[0], reg[1]], v[:, reg[0], reg[1]]
        fhb = p["fhb"] + f32(0.09) * A[26]
        vn = vv * np.where(vv > 0, f32(1) / fhb, f32(1) / p["fht"])
        w = f32(1) - p["taper"] * np.clip(vn, 0, 1)
        f = np.square(uu / (p["fw"] * w)) + np.square(vn)
        cover = cv.cov((f - f32(1)) * (f32(0.5) * p["fw"]))
        cv.paint(reg, cover, skin)
        # soft shading towards the rim gives the oval some volume
        view = cv.img[:, :, reg[0], reg[1]]
        view *= (f32(1) - f32(0.22) * np.clip(f - f32(0.35), 0, 1) * cover)[:, None]

    # eyes, brows and the upper face
    ex, ey, ew = p["ex"], p["ey"], p["ew"]
    reg = cv.region(-0.5, 0.5, -0.5, 0.12)
    if reg:
        uu, vv, aa = uf[:, reg[0], reg[1]], v[:, reg[0], reg[1]], au[:, reg[0], reg[1]]
        # forehead wrinkles (AU1 + AU2)
        fw_s = f32(0.5) * (A[1] + A[2])
        if fw_s.max() > 0:
            y0 = ey - p["bgap"] - f32(0.1)
            t = (y0 - vv) * f32(1 / 0.055)
            dl = np.abs(t - np.round(t)) * f32(0.055) - f32(0.006)
            d = np.maximum(dl, np.maximum(aa - f32(0.2), np.abs(t - f32(1.5)) - f32(1.6)))
            cv.paint(reg, cv.cov(d) * (f32(0.55) * fw_s), shadow)
        # eye socket shade
        du = aa - ex
        dv = vv - ey
        f = np.square(du / (ew * f32(1.5))) + np.square((dv + f32(0.025)) * f32(1 / 0.075))
        cv.paint(reg, np.clip(f32(1) - f, 0, 1) * f32(0.25), shadow)
        # eye opening: between the upper and the lower lid parabolas
        closed = np.clip(f32(1) - f32(1.1) * np.maximum(A[43], A[45]), 0, 1)
        h_up = (
            p["eh"]
            * np.clip(f32(1) + f32(1.1) * A[5] - f32(0.4) * A[7] - f32(0.2) * A[4] - f32(0.2) * A[6], 0, None)
            * closed
        )
        h_lo = (
            p["eh"]
            * f32(0.75)
            * np.clip(f32(1) - f32(0.6) * A[6] - f32(0.5) * A[7] + f32(0.15) * A[5], 0, None)
            * closed
        )
        w = f32(1) - np.square(du / ew)
        up = h_up * w
        d_eye = np.maximum(np.maximum(-up - dv, dv - h_lo * w), np.abs(du) - ew)
        eye = cv.cov(d_eye)
        cv.paint(reg, eye, sclera)
        dx = du - p["gaze"] * np.sign(uu)
        d_iris = (np.square(dx) + np.square(dv) - np.square(p["ri"])) / (f32(2) * p["ri"])
        cv.paint(reg, cv.cov(d_iris) * eye, colors["iris"])
        pupil = cv.cov(d_iris + f32(0.5) * p["ri"]) * eye
        cv.paint(reg, pupil, np.broadcast_to(f32(15), lash.shape))
        # lash line on the upper lid; a closed lid curves down
        lash_y = -up + (f32(1) - closed) * f32(0.012) * np.clip(w, 0, None)
        d = np.maximum(np.abs(dv - lash_y) - f32(0.011), np.abs(du) - ew * f32(1.05))
        cv.paint(reg, cv.cov(d), lash)
        # cheek raise: lower-lid bulge and a lit cheek (AU6)
        if A[6].max() > 0:
            d = np.maximum(np.abs(dv - h_lo * w - f32(0.028)) - f32(0.008), np.abs(du) - ew * f32(0.9))
            cv.paint(reg, cv.cov(d) * (f32(0.6) * A[6]), shadow)
            f = np.square((du - f32(0.02)) * f32(1 / 0.12)) + np.square((dv - f32(0.17)) * f32(1 / 0.07))
            cv.paint(reg, np.clip(f32(1) - f, 0, 1) * (f32(0.7) * A[6]), cheek)
        # brows: an arched band; AU1 raises the inner end, AU2 the outer, AU4 lowers and
        # draws them together, AU9 pulls the inner end down a little
        bx = ex + f32(0.01) - f32(0.04) * A[4]
        bw = p["bw"]
        t = (aa - bx) / bw
        r_in = f32(0.075) * A[1] - f32(0.03) * A[4] - f32(0.015) * A[9]
        r_out = f32(0.07) * A[2]
        by = ey - p["bgap"] + f32(0.045) * A[4] + f32(0.015) * A[9]
        vb = by - p["arch"] * (f32(1) - np.square(t)) - f32(0.5) * (r_in + r_out) - f32(0.5) * (r_out - r_in) * t
        d = np.maximum(np.abs(vv - vb) - p["bth"] * (f32(1) - f32(0.35) * t), np.abs(t) - f32(1))
        cv.paint(reg, cv.cov(d), brow)
        # vertical frown lines between the brows (AU4)
        if A[4].max() > 0:
            d = np.maximum(np.abs(aa - f32(0.035)) - f32(0.007), np.abs(vv - by - f32(0.04)) - f32(0.06))
            cv.paint(reg, cv.cov(d) * (f32(0.7) * A[4]), shadow)

    # nose, nasolabial folds, mouth and chin
    reg = cv.region(-0.5, 0.5, -0.12, 0.95)
    if reg:
        uu, vv, aa = uf[:, reg[0], reg[1]], v[:, reg[0], reg[1]], au[:, reg[0], reg[1]]
        right = uu < 0
        ny = p["ny"] - f32(0.025) * A[9] - f32(0.008) * A[10]
        nw = p["nw"] * (f32(1) + f32(0.3) * A[9])
        # ridge shadow and the nose wrinkles of AU9
        d = np.maximum(np.abs(uu - f32(0.05)) - f32(0.012), np.abs(vv - f32(0.5) * (ey + ny)) - f32(0.45) * (ny - ey))
        cv.paint(reg, cv.cov(d, soft=2.0) * f32(0.25), shadow)
        if A[9].max() > 0:
            t = (vv - ey) * f32(1 / 0.035)
            dl = np.abs(t - np.round(t)) * f32(0.035) - f32(0.006)
            d = np.maximum(dl, np.maximum(aa - f32(0.08), np.abs(t - f32(1.5)) - f32(1.5)))
            cv.paint(reg, cv.cov(d) * (f32(0.8) * A[9]), shadow)
        f = np.square((vv - ny - f32(0.03)) * f32(1 / 0.025)) + np.square(uu / (nw * f32(1.4)))
        cv.paint(reg, np.clip(f32(1) - f, 0, 1) * f32(0.3), shadow)
        f = np.square((aa - nw) * f32(1 / 0.028)) + np.square((vv - ny) * f32(1 / 0.018))
        cv.paint(reg, cv.cov((f - f32(1)) * f32(0.012)), shadow * f32(0.7))
        # mouth: per side width and corner height (contempt acts on one side only)
        a12 = _side(right, L[12], R[12])
        a14 = _side(right, L[14], R[14])
        mw = p["mw"] * (
            f32(1) + f32(0.18) * a12 + f32(0.32) * A[20] - f32(0.12) * A[23] - f32(0.08) * A[24] - f32(0.06) * a14
        )
        cdy = f32(-0.06) * a12 + f32(0.055) * A[15] + f32(0.012) * A[20] + f32(0.02) * A[17] - f32(0.008) * a14
        my = p["my"] + f32(0.03) * A[26]
        t2 = np.square(aa / mw)
        bow = f32(1) - t2
        mc = my + cdy * t2 - f32(0.015) * A[17] * bow
        press = f32(1) - A[24]
        o_up = (f32(0.012) * A[25] + f32(0.018) * A[26] + f32(0.018) * A[10]) * press
        o_lo = (f32(0.012) * A[25] + f32(0.09) * A[26]) * press
        ue = mc - o_up * bow - f32(0.012) * A[10] * bow
        le = mc + o_lo * bow
        thin = np.clip(f32(1) - f32(0.5) * A[23] - f32(0.6) * A[24] - f32(0.3) * A[20], f32(0.15), None)
        top = ue - p["lu"] * thin * (f32(1) - f32(0.5) * t2)
        bot = le + p["ll"] * thin * (f32(1) + f32(0.3) * A[17]) * (f32(1) - f32(0.5) * t2)
        edge = aa - mw
        # nasolabial folds: nose wing to just outside the mouth corner
        fold = np.clip(
            f32(0.1) + f32(0.45) * a12 + f32(0.35) * A[10] + f32(0.4) * A[9] + f32(0.2) * A[6] + f32(0.15) * A[20],
            0,
            f32(0.85),
        )
        x0, y0 = nw + f32(0.035), ny - f32(0.015)
        x1, y1 = mw + f32(0.035), my + cdy + f32(0.03)
        s = np.clip((vv - y0) / (y1 - y0), 0, 1)
        xl = x0 + (x1 - x0) * s + f32(0.06) * s * (f32(1) - s)
        d = np.maximum(np.abs(aa - xl) - f32(0.01), np.abs(vv - f32(0.5) * (y0 + y1)) - f32(0.5) * (y1 - y0))
        cv.paint(reg, cv.cov(d, soft=2.0) * fold, shadow)
        # lips, then the dark opening with the upper teeth in it
        cv.paint(reg, cv.cov(np.maximum(np.maximum(top - vv, vv - bot), edge)), lip)
        inside = cv.cov(np.maximum(np.maximum(ue - vv, vv - le) - f32(0.006), edge))
        cv.paint(reg, inside, mouth_in)
        if (o_up + o_lo).max() > 0:
            cv.paint(reg, inside * cv.cov(vv - ue - f32(0.028)) * np.clip((o_up + o_lo) * f32(60), 0, 1), teeth)
        # dimples (AU14) and the chin boss crease (AU17)
        if a14.max() > 0:
            f = np.square(aa - mw - f32(0.025)) + np.square(vv - my - cdy)
            cv.paint(reg, cv.cov((f - f32(0.016**2)) * f32(1 / 0.032)) * a14, shadow)
        if A[17].max() > 0:
            cy = my + p["ll"] + f32(0.07) + f32(0.02) * A[26]
            d = np.maximum(np.abs(vv - cy + f32(0.4) * np.square(aa)) - f32(0.008), aa - f32(0.09))
            cv.paint(reg, cv.cov(d) * (f32(0.7) * A[17]), shadow)

    # occluders, only for the images that have one
    occ = np.flatnonzero(pose["occ"] > 0)
    if len(occ):
        img = cv.img[occ]
        x, y = cv.x, cv.y
        kind = pose["occ_kind"][occ][:, None, None]
        q = {k: p[k][occ] for k in ("occ_x", "occ_y", "occ_w", "occ_h", "tx", "ty", "scale")}
        # hand over the mouth, glasses bar over the eyes, or a grey block anywhere
        cx = np.where(kind == 0, q["tx"], np.where(kind == 1, q["tx"], q["occ_x"]))
        cy = np.where(
            kind == 0,
            q["ty"] + f32(0.55) * q["scale"],
            np.where(kind == 1, q["ty"] - f32(0.1) * q["scale"], q["occ_y"]),
        )
        hw = np.where(kind == 2, q["occ_w"], f32(0.75) * q["scale"])
        hh = np.where(kind == 0, f32(0.3) * q["scale"], np.where(kind == 1, f32(0.08) * q["scale"], q["occ_h"]))
        d = np.maximum(np.abs(x - cx) - hw, np.abs(y - cy) - hh)
        cover = np.clip(f32(0.5) - d * f32(size / 2.0), 0, 1)[:, None]
        grey = np.broadcast_to(f32(128), skin[occ].shape)
        color = np.where(kind[:, None] == 0, skin[occ] * f32(0.95), np.where(kind[:, None] == 1, f32(20), grey))
        img += cover * (color - img)
        cv.img[occ] = img

    # lighting, contrast and sensor noise
    img = cv.img
    light = p["gain"] + p["lx"] * cv.x + p["ly"] * cv.y
    img *= light[:, None]
    img -= f32(128)
    img *= p["contrast"][:, None]
    img += f32(128)
    noise = np.random.default_rng(int(pose["noise_seed"][0])).standard_normal(img.shape, dtype=f32)
    noise *= p["noise"][:, None]
    img += noise
    np.clip(img, 0, 255, out=img)
    return np.rint(img, out=img).astype(np.uint8).transpose(0, 2, 3, 1)


# --------------------------------------------------------------------------- public API


def generate(
    taxonomy: str = "basic7",
    count: int | None = None,
    size: int = 48,
    channels: int = 1,
    seed: int = 0,
    difficulty: float = 0.5,
    subjects: int = 50,
    occlusion: float = 0.0,
    test_fraction: float = 0.0,
) -> FERData:
    """Render a synthetic FER dataset; the same arguments always give the same bytes.

    Args:
        taxonomy: one of :data:`TAXONOMIES` (``basic7``, ``basic8``, ``compound14``).
        count: number of images, classes balanced to within one; ``None`` means 200 per class.
        size: image side in pixels, 48..224 (faces are drawn at this size directly).
        channels: 1 for grey, 3 for colour.
        seed: seed of every random choice.
        difficulty: 0..1; widens AU intensities towards subtle ones, adds pose, lighting
            and noise variance and drops or adds AUs more often.
        subjects: number of identities; rows carry ``subject_000``-style subject ids.
        occlusion: probability that an image gets an occluder (hand, glasses bar, block).
        test_fraction: share of subjects whose rows get split ``test`` (all else ``train``).

    Returns:
        A :class:`FERData` with labels, 18-dim AU vectors (``aus``) and subjects.

    >>> data = generate(count=14, seed=1)
    >>> data.images.shape, data.class_counts().tolist()
    ((14, 48, 48, 1), [2, 2, 2, 2, 2, 2, 2])
    """
    count = _check_options(taxonomy, count, size, channels, seed, difficulty, subjects, occlusion, test_fraction)
    origin = synthetic_spec(
        taxonomy,
        count=count,
        size=size,
        channels=channels,
        seed=seed,
        difficulty=float(difficulty),
        subjects=subjects,
        occlusion=float(occlusion),
        test_fraction=float(test_fraction),
    )
    rng = np.random.default_rng(seed)
    names = TAXONOMIES[taxonomy]
    labels = rng.permutation(np.arange(count) % len(names)).astype(np.int64)
    subject_of = rng.permutation(np.arange(count) % subjects)
    ident = _sample_identities(subjects, rng)
    intensity, aus = _sample_aus(labels, taxonomy, float(difficulty), rng)
    pose = _sample_pose(count, float(difficulty), float(occlusion), rng)
    n_test = int(round(subjects * test_fraction))
    if test_fraction > 0:
        n_test = min(max(n_test, 1), subjects - 1)
    test_subjects = rng.permutation(subjects)[:n_test]

    images = np.empty((count, size, size, channels), np.uint8)
    for start in range(0, count, _BATCH):
        rows = slice(start, min(start + _BATCH, count))
        who = subject_of[rows]
        images[rows] = _render_batch(
            {k: v[who] for k, v in ident.items()},
            intensity[rows],
            {k: v[rows] for k, v in pose.items()},
            size,
            channels,
        )
    ids = np.array([f"synthetic:{taxonomy}:{i:06d}" for i in range(count)], dtype=object)
    width = max(3, len(str(subjects - 1)))
    subject_names = np.array([f"subject_{s:0{width}d}" for s in range(subjects)], dtype=object)
    splits = np.where(np.isin(subject_of, test_subjects), "test", "train").astype(object)
    return FERData(
        images=images,
        labels=labels,
        class_names=names,
        ids=ids,
        splits=splits,
        sources=np.full(count, origin, dtype=object),
        aus=aus,
        subjects=subject_names[subject_of],
        origin=origin,
    )


def render_grid(
    data: FERData,
    path: str | os.PathLike,
    per_class: int = 8,
    tile: int | None = None,
) -> Path:
    """Write a PNG with ``per_class`` images of every class, one row per class, and return its path.

    Rows are labelled with the class name; images are taken in row order and enlarged by an
    integer factor (nearest neighbour) to about ``tile`` pixels (default: at least 96).
    """
    from PIL import Image, ImageDraw, ImageFont

    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise DataError(f"per_class={per_class!r} must be an integer >= 1")
    if len(data) == 0:
        raise DataError(f"{data.origin or 'data'}: no images to draw")
    h, w, c = data.image_shape
    factor = max(1, round((tile or max(96, h)) / h))
    th, tw = h * factor, w * factor
    try:
        font = ImageFont.load_default(size=max(12, th // 7))
    except TypeError:  # Pillow built without FreeType
        font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = 12 + max(int(probe.textlength(name, font=font)) for name in data.class_names)
    gap = 4
    canvas = Image.new("RGB", (label_w + per_class * (tw + gap), data.num_classes * (th + gap) + gap), "white")
    draw = ImageDraw.Draw(canvas)
    for k, name in enumerate(data.class_names):
        top = gap + k * (th + gap)
        draw.text((6, top + th // 2), name, fill="black", font=font, anchor="lm")
        rows = np.flatnonzero(data.labels == k)[:per_class]
        for j, i in enumerate(rows):
            pixels = data.images[i]
            im = Image.fromarray(pixels[..., 0] if c == 1 else pixels).convert("RGB")
            canvas.paste(im.resize((tw, th), Image.NEAREST), (label_w + j * (tw + gap), top))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, optimize=True)
    return path
