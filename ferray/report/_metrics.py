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

from ferray.metrics import (
    accuracy,
    au_f1,
    balanced_accuracy,
    confusion_matrix,
    log_loss,
    macro_f1,
    per_class_metrics,
    to_labels,
)

__all__ = ["classification_summary", "confusion", "most_confused", "fold_spread", "per_au_f1", "row_normalised"]


def classification_summary(y_true: np.ndarray, proba: np.ndarray, class_names: Sequence[str]) -> dict:
    """Accuracy, balanced accuracy, macro/weighted F1, log-loss and per-class precision/recall/F1/support.

    Balanced accuracy is the mean recall over the classes that have rows (scikit-learn's
    ``balanced_accuracy_score``); macro F1 averages every class of ``class_names``.
    """
    y = np.asarray(y_true, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    if len(y) == 0:
        nan = float("nan")
        return {
            "rows": 0,
            "accuracy": nan,
            "balanced_accuracy": nan,
            "macro_f1": nan,
            "weighted_f1": nan,
            "log_loss": nan,
            "per_class": {c: {"precision": nan, "recall": nan, "f1": nan, "support": 0} for c in class_names},
        }
    pred = to_labels(proba)
    per_class = per_class_metrics(y, pred, class_names)
    f, s = (np.array([c[k] for c in per_class.values()], dtype=np.float64) for k in ("f1", "support"))
    n = len(class_names)
    return {
        "rows": len(y),
        "accuracy": accuracy(y, pred),
        "balanced_accuracy": balanced_accuracy(y, pred, num_classes=n),
        "macro_f1": macro_f1(y, pred, num_classes=n),
        "weighted_f1": float(np.sum(f * s) / np.sum(s)),
        "log_loss": log_loss(y, proba) if proba.ndim == 2 else float("nan"),
        "per_class": per_class,
    }


def confusion(y_true: np.ndarray, proba: np.ndarray, n_classes: int) -> dict:
    """``{"counts": C x C, "normalised": rows summing to 1 (0 for a class without rows)}``; row = true class."""
    counts = confusion_matrix(y_true, proba, n_classes)
    return {"counts": counts.tolist(), "normalised": row_normalised(counts)}


def row_normalised(counts: Sequence[Sequence[int]]) -> list[list[float]]:
    """Each row of a count table divided by its sum (a row without counts stays 0)."""
    a = np.asarray(counts, dtype=np.float64)
    totals = a.sum(axis=1, keepdims=True)
    return np.divide(a, totals, out=np.zeros_like(a), where=totals > 0).tolist()


def most_confused(counts: Sequence[Sequence[int]], class_names: Sequence[str], top: int = 5) -> list[dict]:
    """The ``top`` off-diagonal cells by count: ``{"true", "predicted", "count", "share"}``.

    ``share`` is the fraction of the true class's rows that went to the predicted class.
    Ties keep the order of the classes.
    """
    cm = np.asarray(counts, dtype=np.int64)
    totals = cm.sum(axis=1)
    cells = [(int(cm[i, j]), i, j) for i in range(len(cm)) for j in range(len(cm)) if i != j and cm[i, j] > 0]
    cells.sort(key=lambda c: -c[0])  # stable: ties in class order
    return [
        {"true": class_names[i], "predicted": class_names[j], "count": n, "share": float(n / totals[i])}
        for n, i, j in cells[:top]
    ]


def fold_spread(y_true: np.ndarray, proba: np.ndarray, folds: np.ndarray, class_names: Sequence[str]) -> dict:
    """Accuracy, macro F1 and balanced accuracy of each fold's OOF rows, with their mean and std.

    ``std`` is the population standard deviation over folds (``ferray status``'s ``±``).
    """
    folds = np.asarray(folds)
    per_fold = []
    for f in sorted(int(v) for v in np.unique(folds) if v >= 0):
        keep = folds == f
        s = classification_summary(np.asarray(y_true)[keep], np.asarray(proba)[keep], class_names)
        per_fold.append(
            {
                "fold": f,
                "rows": s["rows"],
                "accuracy": s["accuracy"],
                "macro_f1": s["macro_f1"],
                "balanced_accuracy": s["balanced_accuracy"],
            }
        )
    out: dict = {"folds": per_fold}
    for key in ("accuracy", "macro_f1", "balanced_accuracy"):
        values = np.array([r[key] for r in per_fold], dtype=np.float64)
        out[key] = {
            "mean": float(values.mean()) if len(values) else float("nan"),
            "std": float(values.std()) if len(values) else float("nan"),
        }
    return out


def per_au_f1(au_true: np.ndarray, au_prob: np.ndarray, au_ids: Sequence[int | str], *, threshold: float = 0.5) -> dict:
    """F1 per action unit (``None`` where an AU never occurs), their mean, and each AU's support."""
    mean, per = au_f1(au_true, au_prob, threshold=threshold)
    support = (np.asarray(au_true) > 0.5).sum(axis=0)
    return {
        "threshold": threshold,
        "mean_f1": None if np.isnan(mean) else float(mean),
        "per_au": {
            f"AU{a}": {"f1": None if np.isnan(v) else float(v), "support": int(n)}
            for a, v, n in zip(au_ids, per, support)
        },
    }
