from __future__ import annotations

import numpy as np
import pytest

from ferray.ensemble import VoteEnsemble
from ferray.ensemble._vote import VOTE_NUDGE


def _P(*members):
    return np.array(members, dtype=np.float64)


def test_majority_vote_and_probabilities_are_vote_shares():
    P = _P([[0.6, 0.3, 0.1], [0.1, 0.1, 0.8]], [[0.5, 0.4, 0.1], [0.2, 0.7, 0.1]], [[0.2, 0.7, 0.1], [0.1, 0.2, 0.7]])
    est = VoteEnsemble().fit(P, [0, 2])
    proba = est.predict_proba(P)
    np.testing.assert_array_equal(est.predict(P), [0, 2])
    np.testing.assert_allclose(
        proba, [[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]], atol=VOTE_NUDGE
    )  # shares, nudged by at most VOTE_NUDGE
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_a_tied_vote_goes_to_the_higher_mean_probability_then_the_lower_class():
    P = _P([[0.9, 0.1, 0.0], [0.5, 0.5, 0.0]], [[0.4, 0.6, 0.0], [0.5, 0.5, 0.0]])
    # Row 0: one vote each for 0 and 1; class 0's mean probability (0.65) is higher.
    # Row 1: both members tie internally (argmax -> class 0), so class 0 wins 2-0.
    est = VoteEnsemble().fit(P, [0, 0])
    np.testing.assert_array_equal(est.predict(P), [0, 0])
    swapped = P[:, :, [1, 0, 2]]  # same votes, class order swapped: the winner follows the probability
    np.testing.assert_array_equal(VoteEnsemble().fit(swapped, [1, 1]).predict(swapped), [1, 0])
    exact = _P([[0.7, 0.3]], [[0.3, 0.7]])  # one vote each, equal means: the lower class index
    np.testing.assert_array_equal(VoteEnsemble().fit(exact, [0]).predict(exact), [0])


@pytest.mark.parametrize("seed", [0, 1])
def test_vote_is_deterministic_and_learns_nothing_from_labels(members_data, seed):
    P, y = members_data
    shuffled = np.random.default_rng(seed).permutation(y)
    a = VoteEnsemble().fit(P, y).predict_proba(P)
    b = VoteEnsemble().fit(P, shuffled).predict_proba(P)
    np.testing.assert_array_equal(a, b)


def test_a_tied_vote_is_still_decided_once_stored_as_float32():
    # a 1-1 vote between classes 0 and 1; class 1's mean probability is higher by 0.001
    P = np.array([[[0.400, 0.398, 0.202]], [[0.398, 0.402, 0.200]]])
    proba = VoteEnsemble().fit(P, [1]).predict_proba(P)
    assert proba.argmax(axis=1).tolist() == [1]
    assert proba.astype(np.float32).argmax(axis=1).tolist() == [1]
