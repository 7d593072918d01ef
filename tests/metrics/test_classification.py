"""Accuracy, F1, balanced accuracy, confusion and log-loss: by hand and against scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest

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

Y = np.array([0, 0, 1, 1, 2])
PRED = np.array([0, 1, 1, 1, 0])


def test_accuracy_from_labels_and_probabilities() -> None:
    assert accuracy(Y, PRED) == pytest.approx(3 / 5)
    assert accuracy(Y, np.eye(3)[PRED]) == pytest.approx(3 / 5)


def test_macro_f1_by_hand() -> None:
    # class 0: P=1/2 R=1/2 F=1/2; class 1: P=2/3 R=1 F=0.8; class 2: F=0
    assert macro_f1(Y, PRED) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert macro_f1(Y, PRED, num_classes=4) == pytest.approx((0.5 + 0.8) / 4)


def test_per_class_metrics() -> None:
    out = per_class_metrics(Y, np.eye(3)[PRED], ["anger", "happy", "sad"])
    assert out["happy"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert out["sad"]["support"] == 1 and out["sad"]["f1"] == 0.0


def test_au_f1_skips_absent_aus() -> None:
    true = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0]])
    prob = np.array([[0.9, 0.1, 0.7], [0.2, 0.8, 0.1], [0.6, 0.4, 0.1]])
    mean, per = au_f1(true, prob)
    # AU0: tp=1 fp=1 fn=1 -> 0.5; AU1: tp=1 fn=1 -> 2/3; AU2 never occurs -> NaN
    assert per[0] == pytest.approx(0.5) and per[1] == pytest.approx(2 / 3) and math.isnan(per[2])
    assert mean == pytest.approx((0.5 + 2 / 3) / 2)
    mean_masked, _ = au_f1(true, prob, mask=np.array([True, True, False]))
    assert mean_masked == pytest.approx((2 / 3 + 1.0) / 2)  # AU0 tp=1 fn=1; AU1 perfect


def test_log_loss_hard_and_soft() -> None:
    proba = np.array([[0.5, 0.5], [0.25, 0.75]])
    assert log_loss(np.array([0, 1]), proba) == pytest.approx(-(math.log(0.5) + math.log(0.75)) / 2)
    assert log_loss(np.array([[1.0, 0.0], [0.0, 1.0]]), proba) == pytest.approx(log_loss(np.array([0, 1]), proba))


@pytest.mark.parametrize("seed", range(5))
def test_f1_equals_scikit_learn_without_importing_it(seed) -> None:
    import sklearn.metrics as sklearn_metrics

    rng = np.random.default_rng(seed)
    y, pred = rng.integers(0, 6, 40), rng.integers(0, 5, 40)
    assert macro_f1(y, pred) == pytest.approx(sklearn_metrics.f1_score(y, pred, average="macro", zero_division=0))
    assert macro_f1(y, pred, num_classes=7) == pytest.approx(
        sklearn_metrics.f1_score(y, pred, labels=list(range(7)), average="macro", zero_division=0)
    )
    p, r, f, s = sklearn_metrics.precision_recall_fscore_support(y, pred, labels=list(range(7)), zero_division=0)
    out = per_class_metrics(y, np.eye(7)[pred], [str(c) for c in range(7)])
    assert [out[str(c)]["f1"] for c in range(7)] == pytest.approx(list(f))
    assert [out[str(c)]["precision"] for c in range(7)] == pytest.approx(list(p))
    assert [out[str(c)]["recall"] for c in range(7)] == pytest.approx(list(r))
    assert [out[str(c)]["support"] for c in range(7)] == list(s)


def test_to_labels_from_indices_and_probabilities() -> None:
    assert to_labels(PRED).tolist() == PRED.tolist()
    assert to_labels(np.eye(3)[PRED]).tolist() == PRED.tolist()


def test_accuracy_of_no_rows_is_nan() -> None:
    assert math.isnan(accuracy(np.array([], int), np.array([], int)))


def test_balanced_accuracy_by_hand() -> None:
    # recalls: class 0 1/2, class 1 1, class 2 0
    assert balanced_accuracy(Y, PRED) == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    # a class without rows has no recall and is left out, also when named
    assert balanced_accuracy(Y, PRED, num_classes=5) == pytest.approx(0.5)
    assert balanced_accuracy(Y, PRED, labels=[0, 1]) == pytest.approx(0.75)
    assert math.isnan(balanced_accuracy(np.array([], int), np.array([], int)))


def test_confusion_matrix_by_hand() -> None:
    assert confusion_matrix(Y, np.eye(3)[PRED], 3).tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]


@pytest.mark.parametrize("seed", range(5))
def test_balanced_accuracy_and_confusion_equal_scikit_learn(seed) -> None:
    import sklearn.metrics as sklearn_metrics

    rng = np.random.default_rng(seed)
    y, pred = rng.integers(0, 6, 60), rng.integers(0, 6, 60)
    assert balanced_accuracy(y, pred) == pytest.approx(sklearn_metrics.balanced_accuracy_score(y, pred))
    assert accuracy(y, pred) == pytest.approx(sklearn_metrics.accuracy_score(y, pred))
    np.testing.assert_array_equal(
        confusion_matrix(y, pred, 7), sklearn_metrics.confusion_matrix(y, pred, labels=list(range(7)))
    )
    proba = rng.dirichlet(np.ones(6), 60)
    assert log_loss(y, proba) == pytest.approx(sklearn_metrics.log_loss(y, proba, labels=list(range(6))))
