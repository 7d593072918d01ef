"""Inner cross-validation over out-of-fold rows: honest scores for methods that learn from labels.

A method fitted on the OOF rows and scored on the same rows looks better than it is. The
inner splits here give every row a prediction from a fit that never saw that row's label:
stacking uses them for its ``oof_proba_``, and :func:`cross_val_proba` uses the same splits
for any other method (the greedy weights), so methods are compared on equal terms.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import PredefinedSplit, StratifiedKFold

from ferray.ensemble._base import check_labels, check_member_proba, check_setting

__all__ = ["inner_splits", "cross_val_proba", "INNER_FOLDS"]

#: Inner folds of stacking and of the cross-fitted scores of ``build_ensembles``.
INNER_FOLDS = 5


def inner_splits(y: np.ndarray, inner_folds: Any, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train, test)`` index pairs over ``len(y)`` rows; every row is in exactly one test part.

    ``inner_folds`` is a number of folds (stratified by ``y``, shuffled with ``seed``: the
    same as ``StratifiedKFold(inner_folds, shuffle=True, random_state=seed)``) or an array
    giving each row's fold (an integer >= 0; at least two distinct folds).
    """
    y = np.asarray(y)
    n = len(y)
    if np.ndim(inner_folds) == 0:
        k = check_setting("inner_folds", inner_folds, low=2, integer=True)
        if k > n:
            raise ValueError(f"The value of inner_folds is {k}, but there are only {n} rows; "
                             f"inner_folds must be <= {n}")
        counts = np.bincount(y)
        if k > counts.max():
            raise ValueError(f"The value of inner_folds is {k}, but the largest class has {int(counts.max())} "
                             "rows; stratified folds need inner_folds <= that")
        splitter = StratifiedKFold(n_splits=int(k), shuffle=True, random_state=int(seed))
        return [(tr, te) for tr, te in splitter.split(np.zeros((n, 1)), y)]
    folds = np.asarray(inner_folds)
    if folds.shape != (n,):
        raise ValueError(f"inner_folds has shape {folds.shape}, but there are {n} rows: "
                         "pass a number of folds or one fold index per row")
    if folds.dtype.kind not in "iu" or folds.min() < 0:
        raise ValueError("inner_folds as an array holds each row's fold: integers >= 0")
    if len(np.unique(folds)) < 2:
        raise ValueError("inner_folds as an array names a single fold; at least two are needed")
    return [(tr, te) for tr, te in PredefinedSplit(folds).split()]


def cross_val_proba(estimator: Any, P: Any, y: Any, *, inner_folds: Any = INNER_FOLDS,
                    seed: int = 0) -> np.ndarray:
    """Each row's probabilities from a clone of ``estimator`` fitted without that row's inner fold.

    Args:
        estimator: an (unfitted or fitted: it is cloned) ensemble method.
        P: member probabilities ``(n_members, n_rows, n_classes)``.
        y: labels ``(n_rows,)``.
        inner_folds: number of stratified folds, or each row's fold (see :func:`inner_splits`).
        seed: shuffles the stratified folds.

    Returns:
        ``(n_rows, n_classes)`` out-of-fold probabilities.
    """
    P = check_member_proba(P)
    y = check_labels(y, P.shape[1], P.shape[2])
    out = np.zeros(P.shape[1:], dtype=np.float64)
    for train, test in inner_splits(y, inner_folds, seed):
        fitted = clone(estimator).fit(P[:, train], y[train])
        out[test] = fitted.predict_proba(P[:, test])
    return out
