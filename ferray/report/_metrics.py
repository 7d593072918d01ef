"""Where a classifier fails: per-class scores, confusion, fold spread, per-AU F1.

Every function takes labels ``(N,)`` and probabilities ``(N, C)`` (numpy, no torch) and
returns JSON-ready Python values. Every class of ``class_names`` counts, also one without
rows (support 0) or never predicted, so the tables of two models line up.

>>> import numpy as np
>>> s = classification_summary(np.array([0, 1, 1]), np.array([[.9, .1], [.2, .8], [.6, .4]]), ["a", "b"])
>>> s["accuracy"], s["per_class"]["b"]["recall"]
(0.6666666666666666, 0.5)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["classification_summary", "confusion", "most_confused", "fold_spread", "per_au_f1", "mean_by_row"]


def _labels(proba: np.ndarray) -> np.ndarray:
    proba = np.asarray(proba)
    return proba.argmax(axis=1) if proba.ndim == 2 else proba.astype(np.int64)


def classification_summary(y_true: np.ndarray, proba: np.ndarray, class_names: Sequence[str]) -> dict:
    """Accuracy, balanced accuracy, macro/weighted F1, log-loss and per-class precision/recall/F1/support.

    Balanced accuracy is the mean recall over the classes that have rows (scikit-learn's
    ``balanced_accuracy_score``); macro F1 averages every class of ``class_names``.
    """
    from sklearn.metrics import precision_recall_fscore_support

    from ferray.training.metrics import log_loss

    y = np.asarray(y_true, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    n_classes = len(class_names)
    labels = list(range(n_classes))
    if len(y) == 0:
        nan = float("nan")
        return {"rows": 0, "accuracy": nan, "balanced_accuracy": nan, "macro_f1": nan, "weighted_f1": nan,
                "log_loss": nan, "per_class": {c: {"precision": nan, "recall": nan, "f1": nan, "support": 0}
                                               for c in class_names}}
    pred = _labels(proba)
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    present = s > 0
    return {
        "rows": len(y),
        "accuracy": float(np.mean(pred == y)),
        "balanced_accuracy": float(np.mean(r[present])),
        "macro_f1": float(np.mean(f)),
        "weighted_f1": float(np.sum(f * s) / np.sum(s)),
        "log_loss": log_loss(y, proba) if proba.ndim == 2 else float("nan"),
        "per_class": {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                             "support": int(s[i])} for i, name in enumerate(class_names)},
    }


def confusion(y_true: np.ndarray, proba: np.ndarray, n_classes: int) -> dict:
    """``{"counts": C x C, "normalised": rows summing to 1 (0 for a class without rows)}``; row = true class."""
    y = np.asarray(y_true, dtype=np.int64)
    pred = _labels(proba)
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (y, pred), 1)
    totals = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=np.float64), where=totals > 0)
    return {"counts": counts.tolist(), "normalised": normalised.tolist()}


def most_confused(counts: Sequence[Sequence[int]], class_names: Sequence[str], top: int = 5) -> list[dict]:
    """The ``top`` off-diagonal cells by count: ``{"true", "predicted", "count", "share"}``.

    ``share`` is the fraction of the true class's rows that went to the predicted class.
    Ties keep the order of the classes.
    """
    cm = np.asarray(counts, dtype=np.int64)
    totals = cm.sum(axis=1)
    cells = [(int(cm[i, j]), i, j) for i in range(len(cm)) for j in range(len(cm)) if i != j and cm[i, j] > 0]
    cells.sort(key=lambda c: -c[0])  # stable: ties in class order
    return [{"true": class_names[i], "predicted": class_names[j], "count": n, "share": float(n / totals[i])}
            for n, i, j in cells[:top]]


def fold_spread(y_true: np.ndarray, proba: np.ndarray, folds: np.ndarray, class_names: Sequence[str]) -> dict:
    """Accuracy, macro F1 and balanced accuracy of each fold's OOF rows, with their mean and std.

    ``std`` is the population standard deviation over folds (``ferray status``'s ``±``).
    """
    folds = np.asarray(folds)
    per_fold = []
    for f in sorted(int(v) for v in np.unique(folds) if v >= 0):
        keep = folds == f
        s = classification_summary(np.asarray(y_true)[keep], np.asarray(proba)[keep], class_names)
        per_fold.append({"fold": f, "rows": s["rows"], "accuracy": s["accuracy"], "macro_f1": s["macro_f1"],
                         "balanced_accuracy": s["balanced_accuracy"]})
    out: dict = {"folds": per_fold}
    for key in ("accuracy", "macro_f1", "balanced_accuracy"):
        values = np.array([r[key] for r in per_fold], dtype=np.float64)
        out[key] = {"mean": float(values.mean()) if len(values) else float("nan"),
                    "std": float(values.std()) if len(values) else float("nan")}
    return out


def per_au_f1(au_true: np.ndarray, au_prob: np.ndarray, au_ids: Sequence[int | str], *,
              threshold: float = 0.5) -> dict:
    """F1 per action unit (``None`` where an AU never occurs), their mean, and each AU's support."""
    from ferray.training.metrics import au_f1

    mean, per = au_f1(au_true, au_prob, threshold=threshold)
    support = (np.asarray(au_true) > 0.5).sum(axis=0)
    return {"threshold": threshold, "mean_f1": None if np.isnan(mean) else float(mean),
            "per_au": {f"AU{a}": {"f1": None if np.isnan(v) else float(v), "support": int(n)}
                       for a, v, n in zip(au_ids, per, support)}}


def mean_by_row(rows: np.ndarray, labels: np.ndarray, probs: np.ndarray, au: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Holdout files hold one row per holdout row per fold model: average the models per row.

    Returns sorted unique ``rows``, their labels, mean probabilities and mean AU probabilities.
    """
    uniq, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(uniq))[:, None]
    mean = np.zeros((len(uniq), probs.shape[1]))
    np.add.at(mean, inverse, probs.astype(np.float64))
    au_mean = None
    if au is not None:
        au_mean = np.zeros((len(uniq), au.shape[1]))
        np.add.at(au_mean, inverse, au.astype(np.float64))
        au_mean /= np.maximum(counts, 1)
    return uniq, np.asarray(labels)[first], mean / np.maximum(counts, 1), au_mean
