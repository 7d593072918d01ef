"""Classes of two datasets matched by canonical name (cross-dataset evaluation's first step).

The scores of a model on the matched rows are tested in ``tests/report/test_cross_dataset.py``;
their bootstrap intervals in ``tests/metrics/test_bootstrap.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from ferray.data import (
    FER2013_CLASSES,
    FERPLUS_CLASSES,
    RAFDB_CLASSES,
    match_classes,
    remap_labels,
)
from ferray.errors import DataError


def test_match_classes_between_public_sets():
    mapping, unknown = match_classes(FER2013_CLASSES, FERPLUS_CLASSES)
    assert unknown == ["contempt"]
    assert mapping == {
        "neutral": "neutral",
        "happiness": "happy",
        "surprise": "surprise",
        "sadness": "sad",
        "anger": "angry",
        "disgust": "disgust",
        "fear": "fear",
    }
    mapping, unknown = match_classes(FERPLUS_CLASSES, RAFDB_CLASSES)
    assert unknown == [] and mapping["happiness"] == "happiness" and mapping["anger"] == "anger"
    mapping, unknown = match_classes(["1 - Happy", "2 - Sad"], ["SAD", "Happily surprised", "blur"])
    assert mapping == {"SAD": "2 - Sad"} and unknown == ["Happily surprised", "blur"]


def test_match_classes_errors_name_both_sides():
    with pytest.raises(DataError, match=r"the data's classes \['contempt'\] share no class with the model's \['angry'"):
        match_classes(["angry", "happy"], ["contempt"])
    with pytest.raises(DataError, match=r"model classes .* ambiguous: 'anger' and 'angry' both mean 'angry'"):
        match_classes(["anger", "angry"], ["angry"])


def test_remap_labels_marks_missing_classes():
    labels = np.array([0, 7, 1, 4])  # FER+: neutral, contempt, happiness, anger
    assert remap_labels(labels, FERPLUS_CLASSES, FER2013_CLASSES).tolist() == [6, -1, 3, 0]
