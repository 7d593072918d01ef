"""Inner cross-validation over out-of-fold rows: honest scores for methods that learn from labels.

A method fitted on the OOF rows and scored on the same rows looks better than it is. The
inner splits here give every row a prediction from a fit that never saw that row's label:
stacking uses them for its ``oof_proba_``, and :func:`cross_val_proba` uses the same splits
for any other method (the greedy weights), so methods are compared on equal terms.

Rows that are one face twice (a subject's images, exact or near-duplicate copies) must not
sit on both sides of an inner split either: a meta-learner that has seen a copy's label
scores the other copy from memory. With ``groups`` (the fold plan's groups:
:attr:`ferray.data.FoldPlan.groups`) the inner folds keep every group whole, as the outer
folds do; without them they are stratified by label only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import PredefinedSplit, StratifiedKFold

from ferray.data import grouped_stratified_folds
from ferray.ensemble._base import check_labels, check_member_proba, check_setting
from ferray.errors import DataError

__all__ = ["inner_splits", "cross_val_proba", "INNER_FOLDS"]

#: Inner folds of stacking and of the cross-fitted scores of ``build_ensembles``.
INNER_FOLDS = 5


def check_groups(groups: Any, n: int) -> np.ndarray | None:
    """``groups`` as one integer label per row, or ``None`` when they group nothing.

    ``None``, and groups in which every row is alone, mean label-stratified folds.
    """
    if groups is None:
        return None
    arr = np.asarray(groups)
    if arr.shape != (n,):
        raise ValueError(f"groups has shape {arr.shape}, but there are {n} rows: pass one group label per row")
    _, codes = np.unique(arr, return_inverse=True)
    codes = codes.reshape(-1).astype(np.int64)
    return None if codes.max(initial=-1) + 1 == n else codes


def inner_splits(y: np.ndarray, inner_folds: Any, seed: int, groups: Any = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train, test)`` index pairs over ``len(y)`` rows; every row is in exactly one test part.

    ``inner_folds`` is a number of folds or an array giving each row's fold (an integer
    >= 0; at least two distinct folds), used as it is. A number of folds is stratified by
    ``y`` and seeded with ``seed``: without ``groups`` (or with groups of one row each)
    exactly ``StratifiedKFold(inner_folds, shuffle=True, random_state=seed)``; with
    ``groups`` (one label per row) every group lies in a single fold, so no group has rows
    on both sides of a split, and each class is spread as evenly as the groups allow
    (:func:`ferray.data.grouped_stratified_folds`, the outer fold plan's algorithm).

    >>> y = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    >>> copies = np.array([0, 0, 1, 1, 2, 2, 3, 3])  # each row twice
    >>> [sorted(set(copies[te].tolist())) for _, te in inner_splits(y, 2, seed=0, groups=copies)]
    [[1, 2], [0, 3]]
    """
    y = np.asarray(y)
    n = len(y)
    if np.ndim(inner_folds) == 0:
        k = check_setting("inner_folds", inner_folds, low=2, integer=True)
        if k > n:
            raise ValueError(
                f"The value of inner_folds is {k}, but there are only {n} rows; inner_folds must be <= {n}"
            )
        counts = np.bincount(y)
        if k > counts.max():
            raise ValueError(
                f"The value of inner_folds is {k}, but the largest class has {int(counts.max())} "
                "rows; stratified folds need inner_folds <= that"
            )
        codes = check_groups(groups, n)
        if codes is None:
            splitter = StratifiedKFold(n_splits=int(k), shuffle=True, random_state=int(seed))
            return [(tr, te) for tr, te in splitter.split(np.zeros((n, 1)), y)]
        return _grouped_splits(y, codes, int(k), int(seed))
    folds = np.asarray(inner_folds)
    if folds.shape != (n,):
        raise ValueError(
            f"inner_folds has shape {folds.shape}, but there are {n} rows: "
            "pass a number of folds or one fold index per row"
        )
    if folds.dtype.kind not in "iu" or folds.min() < 0:
        raise ValueError("inner_folds as an array holds each row's fold: integers >= 0")
    if len(np.unique(folds)) < 2:
        raise ValueError("inner_folds as an array names a single fold; at least two are needed")
    return [(tr, te) for tr, te in PredefinedSplit(folds).split()]


def _grouped_splits(y: np.ndarray, codes: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    n_groups = int(codes.max()) + 1
    if k > n_groups:
        raise ValueError(
            f"The value of inner_folds is {k}, but the rows form only {n_groups} groups (subjects "
            f"or duplicate clusters); grouped inner folds need inner_folds <= {n_groups}"
        )
    try:
        fold = grouped_stratified_folds(y, codes, k, seed)
    except DataError as exc:  # a fold left empty by a few very large groups
        raise ValueError(
            f"The value of inner_folds is {k}, but the rows' {n_groups} groups cannot fill "
            f"{k} grouped inner folds ({exc})"
        ) from None
    return [(np.flatnonzero(fold != i), np.flatnonzero(fold == i)) for i in range(k)]


def cross_val_proba(
    estimator: Any, P: Any, y: Any, *, inner_folds: Any = INNER_FOLDS, seed: int = 0, groups: Any = None
) -> np.ndarray:
    """Each row's probabilities from a clone of ``estimator`` fitted without that row's inner fold.

    Args:
        estimator: an (unfitted or fitted: it is cloned) ensemble method.
        P: member probabilities ``(n_members, n_rows, n_classes)``.
        y: labels ``(n_rows,)``.
        inner_folds: number of stratified folds, or each row's fold (see :func:`inner_splits`).
        seed: shuffles the stratified folds.
        groups: one group label per row (subjects, duplicate clusters); a group's rows
            share an inner fold, so no fit sees a copy of a row it predicts. ``None``:
            folds stratified by label only.

    Returns:
        ``(n_rows, n_classes)`` out-of-fold probabilities.
    """
    P = check_member_proba(P)
    y = check_labels(y, P.shape[1], P.shape[2])
    out = np.zeros(P.shape[1:], dtype=np.float64)
    for train, test in inner_splits(y, inner_folds, seed, groups):
        fitted = clone(estimator).fit(P[:, train], y[train])
        out[test] = fitted.predict_proba(P[:, test])
    return out
