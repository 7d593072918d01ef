"""A model scored on another dataset: classes matched by name, the rest excluded and listed."""

from __future__ import annotations

import numpy as np
import pytest

from ferray.data import FER2013_CLASSES, FERPLUS_CLASSES, remap_labels
from ferray.errors import DataError
from ferray.report import cross_dataset_scores


def test_cross_dataset_scores_exclude_and_list_classes_the_model_lacks():
    # a FER2013 model scored on FER+ rows: 4 neutral, 3 happiness, 2 contempt
    y_true = np.array([0, 0, 0, 0, 1, 1, 1, 7, 7])
    model = np.full((9, 7), 0.01)
    predicted = ["neutral", "neutral", "neutral", "sad", "happy", "happy", "angry", "neutral", "happy"]
    model[np.arange(9), [FER2013_CLASSES.index(p) for p in predicted]] = 0.9
    scores = cross_dataset_scores(y_true, model, FER2013_CLASSES, FERPLUS_CLASSES, n_boot=200)
    assert scores["excluded"] == {"contempt": 2} and scores["rows"] == 7 and scores["rows_excluded"] == 2
    assert scores["accuracy"].value == pytest.approx(5 / 7)
    matched = [FER2013_CLASSES.index(c) for c in scores["matched"].values()]
    target = remap_labels(y_true[:7], FERPLUS_CLASSES, FER2013_CLASSES)
    # macro-F1 over the 7 matched classes; predicting 'sad' or 'angry' (absent here) is an error
    assert scores["macro_f1"].value == pytest.approx(_macro_f1_over(target, model[:7].argmax(1), matched))
    # restrict: predict only among the classes the data has ('sad', 'angry' are absent)
    restricted = cross_dataset_scores(y_true, model, FER2013_CLASSES, FERPLUS_CLASSES, restrict=True, n_boot=50)
    assert restricted["accuracy"].value >= scores["accuracy"].value
    with pytest.raises(DataError, match="share no class"):
        cross_dataset_scores(np.array([0]), np.array([0]), ["angry", "happy"], ["contempt"])


def _macro_f1_over(y, p, labels):
    f1 = []
    for c in labels:
        tp = np.sum((y == c) & (p == c))
        denom = np.sum(y == c) + np.sum(p == c)
        f1.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(f1))
