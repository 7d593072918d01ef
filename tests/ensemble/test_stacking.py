from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from ferray.ensemble import StackingEnsemble
from ferray.metrics import accuracy, log_loss

from .conftest import balanced_labels, complementary, member_proba, softmax


def _fixed_folds(n: int, k: int = 4) -> np.ndarray:
    return np.arange(n) % k


def test_a_rows_own_label_never_reaches_its_stacked_oof_prediction():
    P, y = complementary(n_rows=200)
    folds = _fixed_folds(len(y))  # fixed inner folds: flipping a label cannot move the splits
    i = 17
    flipped = y.copy()
    flipped[i] = (y[i] + 1) % 4
    a = StackingEnsemble(C=100.0, inner_folds=folds).fit(P, y)
    b = StackingEnsemble(C=100.0, inner_folds=folds).fit(P, flipped)
    # Row i's stacked OOF prediction comes from a meta-learner that never saw row i's label ...
    np.testing.assert_allclose(a.oof_proba_[i], b.oof_proba_[i], rtol=1e-6, atol=1e-9)
    # ... while that label does reach the meta-learners of the other inner folds, and the
    # refit on all rows: a stacker that scored rows with a model fitted on them would fail above.
    others = folds != folds[i]
    assert np.abs(a.oof_proba_[others] - b.oof_proba_[others]).max() > 1e-6
    assert np.abs(a.predict_proba(P[:, [i]]) - b.predict_proba(P[:, [i]])).max() > 1e-6


def test_a_number_of_inner_folds_means_stratified_shuffled_seeded_folds():
    P, y = complementary(n_rows=150)
    folds = np.empty(len(y), dtype=np.int64)
    for f, (_, test) in enumerate(StratifiedKFold(5, shuffle=True, random_state=11).split(np.zeros(len(y)), y)):
        folds[test] = f
    by_number = StackingEnsemble(inner_folds=5, seed=11).fit(P, y)
    by_folds = StackingEnsemble(inner_folds=folds).fit(P, y)
    np.testing.assert_allclose(by_number.oof_proba_, by_folds.oof_proba_, rtol=1e-6, atol=1e-9)
    other_seed = StackingEnsemble(inner_folds=5, seed=12).fit(P, y)
    assert np.abs(other_seed.oof_proba_ - by_number.oof_proba_).max() > 1e-6


def test_predict_proba_applies_the_documented_linear_layer(members_data):
    P, y = members_data
    est = StackingEnsemble().fit(P, y)
    n_members, n_rows, n_classes = P.shape
    assert est.coef_.shape == (n_classes, n_members * n_classes) and est.intercept_.shape == (n_classes,)
    # softmax(W . concat_m(log clip(p_m, 1e-7, 1)) + b), member-major concatenation
    x = np.concatenate([np.log(np.clip(P[m], 1e-7, 1.0)) for m in range(n_members)], axis=1)
    np.testing.assert_allclose(est.predict_proba(P), softmax(x @ est.coef_.T + est.intercept_), rtol=1e-10)
    # and it is the meta-learner scikit-learn fits on all rows (up to lbfgs's stopping tolerance)
    ref = LogisticRegression(C=1.0, tol=1e-8, max_iter=5000).fit(x, y)
    np.testing.assert_allclose(est.predict_proba(P), ref.predict_proba(x), atol=1e-4)


def test_two_classes_are_written_in_the_same_softmax_form():
    y = balanced_labels(120, 2, seed=1)
    P = np.stack([member_proba(y, 2, seed=s, strength=1.0) for s in (1, 2)])
    est = StackingEnsemble().fit(P, y)
    assert est.coef_.shape == (2, 4) and est.intercept_.shape == (2,)
    x = np.concatenate([np.log(np.clip(P[m], 1e-7, 1.0)) for m in range(2)], axis=1)
    np.testing.assert_allclose(est.predict_proba(P), softmax(x @ est.coef_.T + est.intercept_), rtol=1e-10)
    ref = LogisticRegression(C=1.0, tol=1e-8, max_iter=5000).fit(x, y)
    np.testing.assert_allclose(est.predict_proba(P), ref.predict_proba(x), atol=1e-4)


def test_inner_cv_score_is_the_log_loss_of_the_oof_predictions_and_beats_the_members(members_data):
    P, y = members_data
    est = StackingEnsemble().fit(P, y)
    assert est.oof_proba_.shape == (len(y), 4)
    np.testing.assert_allclose(est.oof_proba_.sum(axis=1), 1.0)
    assert est.inner_cv_score_ == pytest.approx(log_loss(y, est.oof_proba_))
    assert est.inner_cv_accuracy_ == pytest.approx(accuracy(y, est.oof_proba_))
    assert est.inner_cv_score_ < min(log_loss(y, p) for p in P)


def test_same_seed_same_fit_and_settings_untouched(members_data):
    P, y = members_data
    est = StackingEnsemble(C=0.5, seed=4)
    before = est.get_params()
    a = est.fit(P, y)
    assert a is est and est.get_params() == before
    b = clone(est).fit(P, y)
    np.testing.assert_array_equal(a.oof_proba_, b.oof_proba_)
    np.testing.assert_array_equal(a.coef_, b.coef_)


@pytest.mark.parametrize(
    "settings, match",
    [
        ({"C": 0}, r"The value of C is 0, but must be C > 0"),
        ({"meta": "xgboost"}, r"The value of meta is 'xgboost'; must be one of 'logistic'"),
        ({"inner_folds": 1}, r"The value of inner_folds is 1, but must be inner_folds >= 2"),
        ({"inner_folds": 500}, r"The value of inner_folds is 500, but there are only 400 rows"),
        ({"inner_folds": np.zeros(400, dtype=int)}, r"names a single fold; at least two are needed"),
        ({"inner_folds": np.arange(3)}, r"inner_folds has shape \(3,\), but there are 400 rows"),
    ],
)
def test_bad_settings_are_refused_at_fit(members_data, settings, match):
    P, y = members_data
    with pytest.raises(ValueError, match=match):
        StackingEnsemble(**settings).fit(P, y)


def test_a_class_without_rows_is_refused(members_data):
    P, y = members_data
    y = np.where(y == 3, 0, y)
    with pytest.raises(ValueError, match=r"class\(es\) \[3\] have no rows among the labels"):
        StackingEnsemble().fit(P, y)
