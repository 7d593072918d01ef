"""A model scored on another dataset: classes matched by canonical name, the rest listed.

Accuracy and macro-F1 come with the seeded bootstrap intervals of
:func:`ferray.metrics.bootstrap_metrics`; ``ferray evaluate`` (:func:`ferray.report.evaluate_bundle`)
reports them.

>>> import numpy as np
>>> s = cross_dataset_scores(np.array([0, 1, 2]), np.array([1, 0, 0]), ["happy", "angry"],
...                          ["anger", "happiness", "contempt"], n_boot=10)
>>> s["rows"], s["rows_excluded"]
(2, 1)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ferray.data import match_classes
from ferray.metrics import bootstrap_metrics, to_labels

__all__ = ["cross_dataset_scores"]


def cross_dataset_scores(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    model_classes: Sequence[str],
    data_classes: Sequence[str],
    *,
    restrict: bool = False,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict:
    """Score a model on another dataset, classes matched by canonical name.

    Args:
        y_true: the data's labels (indices into ``data_classes``).
        y_pred: the model's probabilities ``(N, len(model_classes))`` or class indices.
        model_classes, data_classes: each side's class names (matched by
            :func:`ferray.data.match_classes`: ``anger`` = ``angry``, ``happiness`` = ``happy``).
        n_boot, level, seed: the bootstrap of :func:`ferray.metrics.bootstrap_metrics`.
        restrict: predict only among the model classes the data has (needs
            probabilities); by default a prediction of a class the data lacks counts as wrong.

    Returns:
        ``{"matched": {data class: model class}, "excluded": {data class: rows},
        "rows": rows scored, "rows_excluded", "accuracy": Interval, "macro_f1": Interval}``.
        Rows of classes the model lacks are left out, never silently: ``excluded`` lists
        them with their counts. Macro-F1 averages over the matched classes.

    Raises:
        DataError: the two share no class (the message lists both).

    >>> s = cross_dataset_scores(np.array([0, 1, 2]), np.array([1, 0, 0]), ["happy", "angry"],
    ...                          ["anger", "happiness", "contempt"], n_boot=10)
    >>> s["matched"], s["excluded"], s["accuracy"].value
    ({'anger': 'angry', 'happiness': 'happy'}, {'contempt': 1}, 1.0)
    """
    mapping, unknown = match_classes(model_classes, data_classes)
    model_index = {n: i for i, n in enumerate(model_classes)}
    table = np.asarray([model_index[mapping[n]] if n in mapping else -1 for n in data_classes], np.int64)
    y_true = np.asarray(y_true, np.int64)
    target = table[y_true]
    keep = target >= 0
    matched = np.asarray(sorted(model_index[m] for m in mapping.values()), np.int64)
    y_pred = np.asarray(y_pred)
    if restrict:
        if y_pred.ndim != 2:
            raise ValueError("restrict=True needs probabilities (N, n_model_classes), not class indices")
        pred = matched[np.argmax(y_pred[:, matched], axis=1)]
    else:
        pred = to_labels(y_pred)
    counts = np.bincount(y_true[~keep], minlength=len(data_classes))
    scores = bootstrap_metrics(target[keep], pred[keep], labels=matched, n_boot=n_boot, level=level, seed=seed)
    return {
        "matched": mapping,
        "excluded": {n: int(counts[i]) for i, n in enumerate(data_classes) if n in unknown},
        "rows": int(keep.sum()),
        "rows_excluded": int((~keep).sum()),
        **scores,
    }
