"""Classification numbers match scikit-learn on a fixed prediction set."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from ferray.report import classification_summary, confusion, fold_spread, most_confused, per_au_f1

NAMES = ["angry", "disgust", "fear", "happy", "sad"]


@pytest.fixture
def fixed():
    """200 rows; 'disgust' has no rows and 'fear' is never predicted."""
    rng = np.random.default_rng(42)
    y = rng.choice([0, 2, 3, 4], size=200, p=[0.3, 0.1, 0.4, 0.2])
    z = rng.normal(size=(200, 5))
    z[np.arange(200), y] += 1.2
    z[:, 2] -= 10.0
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    return y, p


def test_summary_matches_sklearn(fixed):
    y, p = fixed
    pred = p.argmax(1)
    assert 2 not in pred and 1 not in y
    s = classification_summary(y, p, NAMES)
    labels = list(range(5))
    prec, rec, f1, sup = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    for i, c in enumerate(NAMES):
        assert s["per_class"][c] == pytest.approx(
            {"precision": prec[i], "recall": rec[i], "f1": f1[i], "support": sup[i]}
        )
    assert s["accuracy"] == pytest.approx(accuracy_score(y, pred))
    with pytest.warns(UserWarning):  # y_pred has classes y_true lacks: scikit-learn warns, and ignores them
        assert s["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert s["macro_f1"] == pytest.approx(f1_score(y, pred, labels=labels, average="macro", zero_division=0))
    assert s["weighted_f1"] == pytest.approx(f1_score(y, pred, labels=labels, average="weighted", zero_division=0))
    assert s["rows"] == 200


def test_summary_of_no_rows():
    s = classification_summary(np.zeros(0, int), np.zeros((0, 5)), NAMES)
    assert s["rows"] == 0 and np.isnan(s["accuracy"]) and s["per_class"]["sad"]["support"] == 0


def test_confusion_matches_sklearn(fixed):
    y, p = fixed
    cm = confusion(y, p, 5)
    expected = confusion_matrix(y, p.argmax(1), labels=range(5))
    np.testing.assert_array_equal(cm["counts"], expected)
    norm = np.asarray(cm["normalised"])
    with np.errstate(invalid="ignore"):
        ref = np.nan_to_num(confusion_matrix(y, p.argmax(1), labels=range(5), normalize="true"))
    np.testing.assert_allclose(norm, ref)
    assert norm[1].sum() == 0  # a class without rows: a zero row, not NaN


def test_most_confused_pairs():
    counts = [[5, 3, 0], [1, 6, 3], [0, 0, 4]]
    pairs = most_confused(counts, ["a", "b", "c"], top=2)
    assert pairs == [
        {"true": "a", "predicted": "b", "count": 3, "share": 3 / 8},
        {"true": "b", "predicted": "c", "count": 3, "share": 0.3},
    ]
    assert most_confused([[2, 0], [0, 2]], ["a", "b"]) == []


def test_fold_spread(fixed):
    y, p = fixed
    folds = np.arange(200) % 3
    spread = fold_spread(y, p, folds, NAMES)
    accs = [accuracy_score(y[folds == f], p[folds == f].argmax(1)) for f in range(3)]
    assert [f["accuracy"] for f in spread["folds"]] == pytest.approx(accs)
    assert spread["accuracy"]["mean"] == pytest.approx(np.mean(accs))
    assert spread["accuracy"]["std"] == pytest.approx(np.std(accs))
    assert [f["rows"] for f in spread["folds"]] == [67, 67, 66]


def test_per_au_f1_matches_sklearn():
    rng = np.random.default_rng(0)
    t = (rng.random((100, 4)) < 0.3).astype(np.uint8)
    t[:, 3] = 0  # never occurs
    prob = np.clip(t * 0.6 + rng.random((100, 4)) * 0.5, 0, 1)
    out = per_au_f1(t, prob, [1, 2, 4, 45])
    for j, au in enumerate(["AU1", "AU2", "AU4"]):
        assert out["per_au"][au]["f1"] == pytest.approx(f1_score(t[:, j], prob[:, j] >= 0.5))
        assert out["per_au"][au]["support"] == int(t[:, j].sum())
    assert out["per_au"]["AU45"] == {"f1": None, "support": 0}
    assert out["mean_f1"] == pytest.approx(np.mean([out["per_au"][a]["f1"] for a in ("AU1", "AU2", "AU4")]))
