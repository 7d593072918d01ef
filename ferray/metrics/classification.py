"""Classification scores on numpy arrays: accuracy, F1, balanced accuracy, confusion, log-loss.

Fold workers compute these every epoch and ``ferray predict`` installs only numpy, so they
are plain numpy: importing scikit-learn would add seconds to every worker's start-up. The
results equal scikit-learn's (``accuracy_score``, ``f1_score(average="macro",
zero_division=0)``, ``balanced_accuracy_score``, ``precision_recall_fscore_support``,
``confusion_matrix``, ``log_loss``).

``y_pred`` arguments accept either class indices ``(N,)`` or probabilities ``(N, C)``
(reduced with argmax).

>>> import numpy as np
>>> y, proba = np.array([0, 1, 1]), np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
>>> accuracy(y, proba), balanced_accuracy(y, proba)
(0.6666666666666666, 0.75)
>>> confusion_matrix(y, proba, 2).tolist()
[[1, 0], [1, 1]]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "to_labels",
    "accuracy",
    "macro_f1",
    "balanced_accuracy",
    "per_class_metrics",
    "confusion_matrix",
    "log_loss",
    "au_f1",
]


def to_labels(y_pred: np.ndarray) -> np.ndarray:
    """Class indices from indices ``(N,)`` or probabilities/logits ``(N, C)``.

    >>> to_labels(np.array([[0.2, 0.8], [0.7, 0.3]])).tolist()
    [1, 0]
    """
    y_pred = np.asarray(y_pred)
    return y_pred.argmax(axis=1) if y_pred.ndim == 2 else y_pred.astype(np.int64, copy=False)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of rows whose predicted class equals ``y_true`` (NaN without rows)."""
    y_true = np.asarray(y_true)
    if len(y_true) == 0:
        return float("nan")
    return float(np.mean(to_labels(y_pred) == y_true))


def _labels(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int | None, labels: Sequence[int] | None
) -> np.ndarray:
    """The classes a macro average runs over: ``labels``, else ``range(num_classes)``, else those seen."""
    if labels is not None:
        return np.asarray(labels, np.int64)
    if num_classes is not None:
        return np.arange(num_classes)
    return np.union1d(y_true, y_pred).astype(np.int64)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int | None = None) -> float:
    """Unweighted mean F1 over classes.

    With ``num_classes`` all classes count (absent and never-predicted ones score 0);
    without it, the classes in ``y_true`` or the predictions (scikit-learn's default).

    >>> macro_f1(np.array([0, 0, 1]), np.array([0, 1, 1]))
    0.6666666666666666
    """
    y_true = np.asarray(y_true).astype(np.int64, copy=False)
    y_pred = to_labels(y_pred)
    labels = _labels(y_true, y_pred, num_classes, None)
    if not len(labels):
        return 0.0
    _, _, f1, _ = _prf(y_true, y_pred, labels)
    return float(f1.mean())


def balanced_accuracy(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    num_classes: int | None = None,
    labels: Sequence[int] | None = None,
) -> float:
    """Mean recall over the classes that have rows (scikit-learn's ``balanced_accuracy_score``).

    The classes are ``labels``, else ``range(num_classes)``, else those in ``y_true`` or the
    predictions; a class without rows has no recall and is left out. NaN when none has rows.

    >>> balanced_accuracy(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0]))
    0.5
    """
    y_true = np.asarray(y_true).astype(np.int64, copy=False)
    y_pred = to_labels(y_pred)
    _, recall, _, support = _prf(y_true, y_pred, _labels(y_true, y_pred, num_classes, labels))
    has_rows = support > 0
    return float(np.mean(recall[has_rows])) if has_rows.any() else float("nan")


def per_class_metrics(y_true: np.ndarray, proba: np.ndarray, class_names: Sequence[str]) -> dict[str, dict]:
    """``{class_name: {"precision", "recall", "f1", "support"}}`` for every class, in order.

    Class ``i`` is ``class_names[i]``; an undefined precision, recall or F1 is 0.
    """
    p, r, f, s = _prf(np.asarray(y_true).astype(np.int64, copy=False), to_labels(proba), np.arange(len(class_names)))
    return {
        name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, name in enumerate(class_names)
    }


def _prf(
    y_true: np.ndarray, y_pred: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 and support of each of ``labels`` (0 where undefined)."""
    labels = np.asarray(labels, dtype=np.int64)
    tp = np.array([np.sum((y_true == c) & (y_pred == c)) for c in labels], dtype=np.float64)
    predicted = np.array([np.sum(y_pred == c) for c in labels], dtype=np.float64)
    support = np.array([np.sum(y_true == c) for c in labels], dtype=np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / denom, 0.0)
    return precision, recall, f1, support


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``int64 (C, C)`` counts: row = true class, column = predicted class."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(y_true, dtype=np.int64), to_labels(y_pred)), 1)
    return counts


def log_loss(y_true: np.ndarray, proba: np.ndarray, eps: float = 1e-7) -> float:
    """Mean negative log-likelihood; ``y_true`` is class indices ``(N,)`` or soft ``(N, C)``.

    Probabilities are clipped to ``[eps, 1]`` (float64) before the logarithm.

    >>> round(log_loss(np.array([0, 1]), np.array([[0.5, 0.5], [0.5, 0.5]])), 4)
    0.6931
    """
    proba = np.clip(np.asarray(proba, dtype=np.float64), eps, 1.0)
    y_true = np.asarray(y_true)
    if y_true.ndim == 1:
        return float(-np.mean(np.log(proba[np.arange(len(y_true)), y_true.astype(np.int64)])))
    return float(-np.mean(np.sum(y_true * np.log(proba), axis=1)))


def au_f1(
    au_true: np.ndarray, au_prob: np.ndarray, threshold: float = 0.5, mask: np.ndarray | None = None
) -> tuple[float, np.ndarray]:
    """F1 per action unit and their mean over AUs that occur in ``au_true``.

    Args:
        au_true: 0/1 ``(N, A)``.
        au_prob: probabilities ``(N, A)``, positive when ``>= threshold``.
        threshold: decision threshold.
        mask: optional ``(N,)`` bool of rows whose AUs are known.

    Returns:
        ``(mean_f1, per_au)``; ``per_au[a]`` is NaN where AU ``a`` never occurs, and the mean
        is NaN when no AU occurs.
    """
    t = np.asarray(au_true) > 0.5
    pred = np.asarray(au_prob) >= threshold
    if mask is not None:
        keep = np.asarray(mask, dtype=bool)
        t, pred = t[keep], pred[keep]
    tp = (t & pred).sum(axis=0).astype(np.float64)
    fp = (~t & pred).sum(axis=0)
    fn = (t & ~pred).sum(axis=0)
    occurs = t.any(axis=0)
    per_au = np.full(t.shape[1], np.nan)
    per_au[occurs] = 2 * tp[occurs] / (2 * tp[occurs] + fp[occurs] + fn[occurs])
    mean = float(per_au[occurs].mean()) if occurs.any() else float("nan")
    return mean, per_au
