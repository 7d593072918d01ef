"""Duplicate clusters and the groups fold plans keep together.

Two rows are duplicates when their 64-bit perceptual hashes (:func:`phash64`) differ in at
most ``near_distance`` bits; byte-identical images have identical hashes, so exact
duplicates are included. A *cluster* is a connected set of duplicates (a chain of near
duplicates is one cluster). Fold plans keep each cluster, joined with the rows of each
subject, inside one fold; :func:`clean_holdout_mask` finds the holdout rows that have a
duplicate among the rows the models train on.

This module needs numpy only (a fold worker may call :func:`clean_holdout_mask`).
"""

from __future__ import annotations

import weakref

import numpy as np

from ferray.data._hashing import near_duplicate_pairs, phash64
from ferray.data._table import FERData
from ferray.errors import DataError

__all__ = [
    "NEAR_DUPLICATE_DISTANCE",
    "clean_holdout_mask",
    "connected_labels",
    "duplicate_pairs",
    "fold_groups",
]

#: Default Hamming distance (of 64 pHash bits) up to which two images count as near duplicates.
NEAR_DUPLICATE_DISTANCE = 3

# Hashes are computed once per FERData object (fold plan, holdout mask and check share them).
_PHASH_CACHE: weakref.WeakKeyDictionary[FERData, np.ndarray] = weakref.WeakKeyDictionary()
_PAIR_CACHE: weakref.WeakKeyDictionary[FERData, dict[int, tuple[np.ndarray, np.ndarray]]] = weakref.WeakKeyDictionary()


def _check_distance(near_distance: object) -> int:
    if (
        isinstance(near_distance, bool)
        or not isinstance(near_distance, (int, np.integer))
        or not 0 <= near_distance <= 16
    ):
        raise DataError(f"near_distance is {near_distance!r}, but must be an integer 0..16 (bits of 64)")
    return int(near_distance)


def phashes(data: FERData) -> np.ndarray:
    """The rows' 64-bit perceptual hashes, computed once per ``data`` object."""
    cached = _PHASH_CACHE.get(data)
    if cached is None:
        cached = _PHASH_CACHE[data] = phash64(data.images)
    return cached


def duplicate_pairs(data: FERData, near_distance: int = NEAR_DUPLICATE_DISTANCE) -> tuple[np.ndarray, np.ndarray]:
    """Row pairs ``(a, b)``, ``a < b``, whose pHashes differ in at most ``near_distance`` bits.

    Exact duplicates are among them (equal bytes give equal hashes).
    """
    near_distance = _check_distance(near_distance)
    by_distance = _PAIR_CACHE.setdefault(data, {})
    if near_distance not in by_distance:
        a, b, _ = near_duplicate_pairs(phashes(data), near_distance)
        by_distance[near_distance] = (a.astype(np.int64), b.astype(np.int64))
    return by_distance[near_distance]


def connected_labels(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A component label per node of the graph on ``n`` nodes with edges ``a[i] - b[i]``.

    Nodes of one component share a label (the index of one of them); isolated nodes keep
    their own index.

    >>> connected_labels(5, np.array([0, 3]), np.array([1, 1])).tolist()
    [0, 0, 2, 0, 4]
    """
    label = np.arange(n, dtype=np.int64)
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    if not len(a):
        return label
    while True:
        la, lb = label[a], label[b]
        if np.array_equal(la, lb):
            return label
        # hook each root onto the smaller root it is joined with, then jump pointers to roots
        low = np.minimum(la, lb)
        np.minimum.at(label, la, low)
        np.minimum.at(label, lb, low)
        while True:
            nxt = label[label]
            if np.array_equal(nxt, label):
                break
            label = nxt


def fold_groups(
    data: FERData,
    rows: np.ndarray,
    *,
    by_subject: bool = True,
    by_duplicates: bool = True,
    near_distance: int = NEAR_DUPLICATE_DISTANCE,
) -> tuple[np.ndarray | None, int, int]:
    """Groups of ``rows`` that must share a fold: subjects joined with duplicate clusters.

    Only duplicates with both rows among ``rows`` join groups.

    Returns:
        ``(group, duplicate_rows, duplicate_clusters)``: an ``int64`` group label per entry
        of ``rows`` (``None`` when neither subjects nor duplicates group anything), the
        number of ``rows`` in duplicate clusters of two or more, and the number of such
        clusters.
    """
    rows = np.asarray(rows, np.int64)
    m = len(rows)
    edges_a: list[np.ndarray] = []
    edges_b: list[np.ndarray] = []
    has_subjects = by_subject and data.subjects is not None
    dup_rows = dup_clusters = 0
    if by_duplicates:
        pos = np.full(len(data), -1, np.int64)
        pos[rows] = np.arange(m)
        a, b = duplicate_pairs(data, near_distance)
        pa, pb = pos[a], pos[b]
        keep = (pa >= 0) & (pb >= 0)
        pa, pb = pa[keep], pb[keep]
        if len(pa):
            clusters = connected_labels(m, pa, pb)
            sizes = np.bincount(clusters, minlength=m)
            dup_rows = int((sizes[clusters] > 1).sum())
            dup_clusters = int((sizes > 1).sum())
            edges_a.append(pa)
            edges_b.append(pb)
    if has_subjects:
        _, first, code = np.unique(data.subjects[rows].astype(str), return_index=True, return_inverse=True)
        edges_a.append(np.arange(m, dtype=np.int64))
        edges_b.append(first[code.reshape(-1)].astype(np.int64))
    if not has_subjects and not dup_rows:
        return None, 0, 0
    label = connected_labels(m, np.concatenate(edges_a), np.concatenate(edges_b))
    return np.unique(label, return_inverse=True)[1].reshape(-1).astype(np.int64), dup_rows, dup_clusters


def clean_holdout_mask(data: FERData, fold: object, near_distance: int = NEAR_DUPLICATE_DISTANCE) -> np.ndarray:
    """``True`` for holdout rows without a duplicate among the cross-validation rows.

    Args:
        data: the dataset the plan was made for.
        fold: a :class:`~ferray.data.FoldPlan` or its ``fold`` array (negative = holdout).
        near_distance: pHash bits up to which two images count as duplicates.

    Returns:
        A ``bool`` array of ``len(data)``; every non-holdout row is ``False``. The holdout
        rows a model could have memorised (an exact or near copy was trained on) are
        ``False`` too, so ``mask[plan.holdout_index]`` selects the "clean" holdout.

    >>> from ferray.data import generate, plan_folds
    >>> data = generate(count=70, seed=0, test_fraction=0.2)
    >>> plan = plan_folds(data, 3)
    >>> bool(clean_holdout_mask(data, plan)[plan.holdout_index].all())
    True
    """
    fold_arr = np.asarray(getattr(fold, "fold", fold))
    if fold_arr.shape != (len(data),):
        raise DataError(f"the fold array has shape {fold_arr.shape} but the data has {len(data)} rows")
    held = fold_arr < 0
    mask = held.copy()
    if not held.any() or held.all():
        return mask
    a, b = duplicate_pairs(data, near_distance)
    leak_a = held[a] & ~held[b]  # a is holdout, its duplicate b is trained on (in some fold)
    leak_b = held[b] & ~held[a]
    mask[a[leak_a]] = False
    mask[b[leak_b]] = False
    return mask
