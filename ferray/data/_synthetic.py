"""ferray's embedded dataset: synthetic faces whose expressions are driven by FACS action units.

Nothing is downloaded. :func:`generate` assembles a :class:`~ferray.data.FERData` from
faces drawn by a parametric renderer (:mod:`ferray.data._synthetic_render`) from random
draws (:mod:`ferray.data._synthetic_sampling`). Every face has

* an *identity* (face oval and chin taper, skin tone, hair, eye size and spacing, iris
  colour, brow thickness and arch, nose and mouth size) shared by all images of its subject,
* a *pose* (in-plane rotation, yaw-like shift with asymmetric horizontal scaling,
  translation, scale), *lighting* (directional gradient, brightness, contrast) and noise,
* an optional *occlusion* (a hand over the mouth, a dark glasses bar, or a grey block),
* action-unit intensities in ``[0, 1]`` that move the features (brows, lids, cheeks, nose,
  lips, jaw).

An emotion is an EMFACS-style AU prototype (:data:`~ferray.data.EMOTION_AUS`); compound
emotions take the union of their two components (Du, Tao & Martinez, 2014).
Prototype AUs are dropped and extra AUs added at random, more often as ``difficulty``
grows, so a label never fully determines the face. Each row carries its label and its
18-dim AU multi-hot vector in :data:`~ferray.data.AU_IDS` order.

A source string selects the data, e.g. ``synthetic:basic7?count=1400&size=48&seed=0``;
see :func:`parse_synthetic_spec` for the options.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ferray.data._synthetic_render import render_batch
from ferray.data._synthetic_sampling import sample_aus, sample_identities, sample_pose
from ferray.data._table import FERData
from ferray.data._taxonomies import TAXONOMIES
from ferray.errors import DataError, closest

__all__ = [
    "SYNTHETIC_DEFAULTS",
    "generate",
    "parse_synthetic_spec",
    "synthetic_spec",
]

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


# --------------------------------------------------------------------------- generate


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
    ident = sample_identities(subjects, rng)
    intensity, aus = sample_aus(labels, taxonomy, float(difficulty), rng)
    pose = sample_pose(count, float(difficulty), float(occlusion), rng)
    n_test = int(round(subjects * test_fraction))
    if test_fraction > 0:
        n_test = min(max(n_test, 1), subjects - 1)
    test_subjects = rng.permutation(subjects)[:n_test]

    images = np.empty((count, size, size, channels), np.uint8)
    for start in range(0, count, _BATCH):
        rows = slice(start, min(start + _BATCH, count))
        who = subject_of[rows]
        images[rows] = render_batch(
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
