"""Evaluation metrics on numpy arrays (no torch, no scikit-learn), shared by training, search and ensembles.

Fold workers compute these every epoch, so they are plain numpy: importing scikit-learn
would add seconds to every worker's start-up. The results equal scikit-learn's
``f1_score(average="macro", zero_division=0)`` and ``precision_recall_fscore_support``.

``y_pred`` arguments accept either class indices ``(N,)`` or probabilities ``(N, C)``
(reduced with argmax).

>>> import numpy as np
>>> accuracy(np.array([0, 1, 1]), np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]))
0.6666666666666666
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["accuracy", "macro_f1", "per_class_metrics", "au_f1", "log_loss", "to_labels"]


def to_labels(y_pred: np.ndarray) -> np.ndarray:
    """Class indices from indices ``(N,)`` or probabilities/logits ``(N, C)``."""
    y_pred = np.asarray(y_pred)
    return y_pred.argmax(axis=1) if y_pred.ndim == 2 else y_pred.astype(np.int64, copy=False)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of rows whose predicted class equals ``y_true``."""
    y_true = np.asarray(y_true)
    if len(y_true) == 0:
        return float("nan")
    return float(np.mean(to_labels(y_pred) == y_true))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int | None = None) -> float:
    """Unweighted mean F1 over classes.

    With ``num_classes`` all classes count (absent and never-predicted ones score 0);
    without it, the classes in ``y_true`` or the predictions (scikit-learn's default).
    """
    y_true = np.asarray(y_true).astype(np.int64, copy=False)
    y_pred = to_labels(y_pred)
    labels = np.arange(num_classes) if num_classes is not None else np.union1d(y_true, y_pred)
    if not len(labels):
        return 0.0
    _, _, f1, _ = _prf(y_true, y_pred, labels)
    return float(f1.mean())


def per_class_metrics(y_true: np.ndarray, proba: np.ndarray, class_names: Sequence[str]) -> dict[str, dict]:
    """``{class_name: {"precision", "recall", "f1", "support"}}`` for every class, in order."""
    p, r, f, s = _prf(np.asarray(y_true).astype(np.int64, copy=False), to_labels(proba),
                      np.arange(len(class_names)))
    return {
        name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, name in enumerate(class_names)
    }


def _prf(y_true: np.ndarray, y_pred: np.ndarray, labels: np.ndarray
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


def log_loss(y_true: np.ndarray, proba: np.ndarray, eps: float = 1e-7) -> float:
    """Mean negative log-likelihood; ``y_true`` is class indices ``(N,)`` or soft ``(N, C)``."""
    proba = np.clip(np.asarray(proba, dtype=np.float64), eps, 1.0)
    y_true = np.asarray(y_true)
    if y_true.ndim == 1:
        return float(-np.mean(np.log(proba[np.arange(len(y_true)), y_true.astype(np.int64)])))
    return float(-np.mean(np.sum(y_true * np.log(proba), axis=1)))
