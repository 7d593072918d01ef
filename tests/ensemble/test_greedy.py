from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from ferray.ensemble import GreedyEnsemble
from ferray.metrics import accuracy, log_loss

from .conftest import complementary


@pytest.mark.parametrize("metric", ["log_loss", "accuracy"])
@pytest.mark.parametrize("iterations", [1, 7, 25])
def test_weights_are_a_distribution_over_members(members_data, metric, iterations):
    P, y = members_data
    est = GreedyEnsemble(iterations=iterations, metric=metric).fit(P, y)
    assert est.weights_.shape == (3,)
    assert np.all(est.weights_ >= 0)
    assert est.weights_.sum() == pytest.approx(1.0)
    assert len(est.trajectory_) == iterations
    assert 1 <= len(est.indices_) <= iterations
    # The weights are the pick counts of the kept prefix.
    np.testing.assert_allclose(est.weights_, np.bincount(est.indices_, minlength=3) / len(est.indices_))
    np.testing.assert_allclose(est.predict_proba(P).sum(axis=1), 1.0)


def test_same_seed_same_weights_and_ties_resolved_by_the_seed():
    P, y = complementary(seed=3)
    P = np.concatenate([P[:1], P[:1], P[1:]])  # members 0 and 1 are identical: every round ties them
    picks = set()
    for seed in range(12):
        a = GreedyEnsemble(iterations=10, seed=seed).fit(P, y)
        b = GreedyEnsemble(iterations=10, seed=seed).fit(P, y)
        np.testing.assert_array_equal(a.weights_, b.weights_)
        np.testing.assert_array_equal(a.indices_, b.indices_)
        # Once one twin is picked, ties go to it: the twins never share weight.
        assert min(a.weights_[0], a.weights_[1]) == 0.0
        picks.add(int(np.argmax(a.weights_[:2])))
    assert picks == {0, 1}  # which twin is the seed's draw, not a fixed rule such as the lower index


def test_improves_over_the_best_member_when_members_complement_each_other(members_data):
    P, y = members_data
    est = GreedyEnsemble(iterations=25).fit(P, y)
    best_member = min(log_loss(y, p) for p in P)
    assert log_loss(y, est.predict_proba(P)) < best_member - 0.05
    assert accuracy(y, est.predict_proba(P)) > max(accuracy(y, p) for p in P)
    assert est.weights_[0] > 0 and est.weights_[1] > 0  # both experts are used
    # ... and the gain holds on fresh rows drawn the same way (not only on the fit rows).
    P2, y2 = complementary(n_rows=400, seed=7)
    assert log_loss(y2, est.predict_proba(P2)) < min(log_loss(y2, p) for p in P2)


def test_keeps_the_best_prefix_of_the_trajectory():
    # Member 0 is sure of row 0 and wrong on row 1, member 1 the other way round: the 50/50
    # average (round 2) beats every later round, whose ensembles lean to one member.
    P = np.array([[[0.9, 0.1], [0.6, 0.4]], [[0.4, 0.6], [0.1, 0.9]]])
    y = np.array([0, 1])
    est = GreedyEnsemble(iterations=5).fit(P, y)
    assert len(est.trajectory_) == 5
    assert est.trajectory_[2] > est.trajectory_[1]  # round 3 is worse than round 2 ...
    assert len(est.indices_) == 2  # ... so only the first two rounds are kept
    np.testing.assert_allclose(est.weights_, [0.5, 0.5])
    assert est.score_ == pytest.approx(est.trajectory_.min())
    assert est.score_ == pytest.approx(log_loss(y, est.predict_proba(P)))


def test_accuracy_trajectory_is_accuracy_and_the_kept_prefix_maximises_it(members_data):
    P, y = members_data
    est = GreedyEnsemble(iterations=15, metric="accuracy").fit(P, y)
    assert np.all((est.trajectory_ >= 0) & (est.trajectory_ <= 1))
    assert est.score_ == pytest.approx(est.trajectory_.max())
    assert est.score_ == pytest.approx(accuracy(y, est.predict_proba(P)))
    assert len(est.indices_) == int(np.argmax(est.trajectory_)) + 1


def test_predict_proba_is_the_weighted_average(members_data):
    P, y = members_data
    est = GreedyEnsemble(iterations=9).fit(P, y)
    np.testing.assert_allclose(est.predict_proba(P), np.einsum("m,mnc->nc", est.weights_, P))
    np.testing.assert_array_equal(est.predict(P), est.predict_proba(P).argmax(axis=1))


def test_fit_keeps_settings_and_clone_is_unfitted(members_data):
    P, y = members_data
    est = GreedyEnsemble(iterations=5, seed=3, metric="accuracy")
    before = est.get_params()
    assert est.fit(P, y) is est
    assert (
        est.get_params()
        == before
        == {
            "iterations": 5,
            "seed": 3,
            "metric": "accuracy",
            "bags": 1,
            "bag_fraction": 0.5,
            "member_costs": None,
            "max_cost": None,
        }
    )
    copy = clone(est)
    assert copy.get_params() == before and not hasattr(copy, "weights_")


@pytest.mark.parametrize(
    "settings, match",
    [
        ({"iterations": 0}, r"The value of iterations is 0, but must be iterations >= 1"),
        ({"iterations": 2.5}, r"The value of iterations is 2.5, but must be an integer"),
        ({"metric": "auc"}, r"The value of metric is 'auc'; must be one of 'log_loss', 'accuracy'"),
        ({"metric": "logloss"}, r"did you mean 'log_loss'"),
        ({"seed": -1}, r"The value of seed is -1, but must be seed >= 0"),
    ],
)
def test_bad_settings_are_refused_at_fit(members_data, settings, match):
    P, y = members_data
    est = GreedyEnsemble(**settings)  # __init__ only stores (scikit-learn's contract)
    with pytest.raises(ValueError, match=match):
        est.fit(P, y)


@pytest.mark.parametrize(
    "P, y, match",
    [
        (np.full((4, 2), 0.5), [0, 1, 0, 1], r"shape \(4, 2\), but must be \(n_members, n_rows, n_classes\)"),
        (np.full((1, 2, 2), 3.0), [0, 1], r"outside \[0, 1\] .*not logits"),
        (np.full((1, 2, 2), np.nan), [0, 1], r"holds 4 non-finite values \(NaN or inf\)"),
        (np.full((1, 2, 2), 0.5), [0, 2], r"y holds class 2, but P has 2 classes"),
        (np.full((1, 2, 2), 0.5), [0], r"y has shape \(1,\), but P has 2 rows"),
    ],
)
def test_bad_input_is_refused(P, y, match):
    with pytest.raises(ValueError, match=match):
        GreedyEnsemble().fit(P, y)


def test_predict_before_fit_and_with_other_members_is_refused(members_data):
    P, y = members_data
    with pytest.raises(NotFittedError):
        GreedyEnsemble().predict_proba(P)
    est = GreedyEnsemble().fit(P, y)
    with pytest.raises(ValueError, match=r"P has 2 members and 4 classes, but GreedyEnsemble was fitted on 3 members"):
        est.predict_proba(P[:2])


def _noisy_members(seed: int, n_fit: int = 60, n_holdout: int = 2000, classes: int = 7, members: int = 12):
    """Members of equal skill whose errors are independent: what wins one selection is the rows' noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n_fit + n_holdout)
    z = np.eye(classes)[y][None] + rng.normal(0, 1.2, size=(members, len(y), classes))
    P = np.exp(z) / np.exp(z).sum(axis=2, keepdims=True)
    return P[:, :n_fit], y[:n_fit], P[:, n_fit:], y[n_fit:]


def _log_loss(p, y):
    return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-7, 1)).mean())


def test_bagged_selection_overfits_the_selection_rows_less():
    # Measured over seeds 0-19: holdout log-loss 1.388 unbagged, 1.357 bagged; bagged lower in all 20.
    better = []
    for seed in range(10):
        P_fit, y_fit, P_hold, y_hold = _noisy_members(seed)
        plain = GreedyEnsemble(iterations=25, seed=seed).fit(P_fit, y_fit)
        bagged = GreedyEnsemble(iterations=25, seed=seed, bags=20).fit(P_fit, y_fit)
        assert bagged.weights_.sum() == pytest.approx(1.0) and bagged.bag_members_.shape == (20, 6)
        better.append(_log_loss(bagged.predict_proba(P_hold), y_hold) < _log_loss(plain.predict_proba(P_hold), y_hold))
    assert sum(better) >= 8, better


def test_bagging_is_seeded_and_one_bag_is_plain_selection():
    P_fit, y_fit, _, _ = _noisy_members(0)
    a = GreedyEnsemble(iterations=10, seed=3, bags=5).fit(P_fit, y_fit)
    b = GreedyEnsemble(iterations=10, seed=3, bags=5).fit(P_fit, y_fit)
    assert np.array_equal(a.weights_, b.weights_)
    assert np.array_equal(
        GreedyEnsemble(iterations=10, seed=3, bags=1).fit(P_fit, y_fit).weights_,
        GreedyEnsemble(iterations=10, seed=3).fit(P_fit, y_fit).weights_,
    )
    assert a.to_dict()["bag_members"] == a.bag_members_.tolist()


@pytest.mark.parametrize(
    "setting, value, match",
    [("bags", 0, r"bags >= 1"), ("bag_fraction", 0.0, r"bag_fraction"), ("bag_fraction", 1.5, r"bag_fraction <= 1")],
)
def test_bagging_settings_are_checked_at_fit(setting, value, match):
    P_fit, y_fit, _, _ = _noisy_members(0)
    with pytest.raises(ValueError, match=match):
        GreedyEnsemble(**{setting: value}).fit(P_fit, y_fit)
