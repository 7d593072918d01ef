from __future__ import annotations

import numpy as np

from ferray.ensemble import MeanEnsemble


def test_mean_is_the_plain_average_with_equal_weights(members_data):
    P, y = members_data
    est = MeanEnsemble().fit(P, y)
    np.testing.assert_allclose(est.weights_, [1 / 3] * 3)
    np.testing.assert_allclose(est.predict_proba(P), P.mean(axis=0))
    np.testing.assert_allclose(est.predict_proba(P).sum(axis=1), 1.0)


def test_mean_learns_nothing_from_the_labels(members_data):
    P, y = members_data
    shuffled = np.random.default_rng(0).permutation(y)
    np.testing.assert_array_equal(
        MeanEnsemble().fit(P, y).predict_proba(P), MeanEnsemble().fit(P, shuffled).predict_proba(P)
    )
    assert not MeanEnsemble.learns_from_labels
