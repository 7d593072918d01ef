"""Random draws of the synthetic faces: identities, action units, pose, lighting and noise.

Every draw comes from the generator passed in, in a fixed order, so the same seed gives the
same faces. ``difficulty`` (0..1) widens what is drawn: subtler AU intensities, prototype
AUs dropped and distractor AUs added more often, more pose, lighting and sensor noise.
"""

from __future__ import annotations

import numpy as np

from ferray.data._synthetic_render import AU_COLUMN, RENDER_AUS
from ferray.data._table import AU_IDS
from ferray.data._taxonomies import EMOTION_AUS, TAXONOMIES, emotion_components

__all__ = ["class_table", "sample_identities", "sample_aus", "sample_pose"]

_VEC_COLS = np.array([AU_COLUMN[au] for au in AU_IDS])
# AUs that may be added at random as distractors (AU43 is left to the blink distractor).
_EXTRA_AUS = np.array([AU_COLUMN[au] for au in AU_IDS if au not in (43, 45)])


def class_table(taxonomy: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class: which rendered AUs are always / sometimes / right-only present."""
    names = TAXONOMIES[taxonomy]
    always = np.zeros((len(names), len(RENDER_AUS)), bool)
    sometimes = np.zeros_like(always)
    right = np.zeros_like(always)
    for k, name in enumerate(names):
        for emotion in emotion_components(name):
            a, s, r = EMOTION_AUS[emotion]
            always[k, [AU_COLUMN[x] for x in a]] = True
            sometimes[k, [AU_COLUMN[x] for x in s]] = True
            right[k, [AU_COLUMN[x] for x in r]] = True
    sometimes &= ~always
    return always, sometimes, right


def sample_identities(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per subject: colours (skin, hair, iris) and the face geometry shared by all its images."""
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


def sample_aus(
    labels: np.ndarray, taxonomy: str, difficulty: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """AU intensities ``(n, n_render_aus, 2)`` (subject's left, right) and the 18-AU multi-hot."""
    n, m = len(labels), len(RENDER_AUS)
    always, sometimes, right = (t[labels] for t in class_table(taxonomy))
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
    present[blink, AU_COLUMN[45]] = True
    low = float(np.clip(0.85 - 0.75 * difficulty, 0.1, 0.85))
    level = rng.uniform(low, 1.0, (n, m))
    level[:, AU_COLUMN[45]] = rng.uniform(0.75, 1.0, n)
    level = np.where(present, level, 0.0).astype(np.float32)
    both = np.where(right & ~(add[:, None] & (np.arange(m) == extra[:, None])), 0.0, level)
    intensity = np.stack([both, level], axis=2).astype(np.float32)
    return intensity, present[:, _VEC_COLS].astype(np.uint8)


def sample_pose(n: int, difficulty: float, occlusion: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per image: pose, gaze, lighting, contrast, noise, background and occluder."""
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
