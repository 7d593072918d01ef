from __future__ import annotations

import numpy as np
import pytest

from ferray.ensemble import GreedyEnsemble, cross_val_proba, inner_splits

from .conftest import balanced_labels


def test_inner_splits_partition_the_rows_stratified_and_seeded():
    y = balanced_labels(103, 4, seed=0)
    splits = inner_splits(y, 5, seed=3)
    tests = np.concatenate([te for _, te in splits])
    assert sorted(tests.tolist()) == list(range(103))
    for train, test in splits:
        assert not set(train) & set(test)
        assert set(np.bincount(y[test], minlength=4)) <= {5, 6}  # every class spread over the folds
    again = inner_splits(y, 5, seed=3)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(splits, again))
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(splits, inner_splits(y, 5, seed=4)))


def test_inner_splits_take_each_rows_fold():
    folds = np.array([0, 1, 2, 0, 1, 2])
    splits = inner_splits(np.zeros(6, dtype=int), folds, seed=0)
    assert [te.tolist() for _, te in splits] == [[0, 3], [1, 4], [2, 5]]


def test_too_many_inner_folds_for_the_classes_is_refused():
    with pytest.raises(ValueError, match=r"inner_folds is 5, but the largest class has 3 rows"):
        inner_splits(np.array([0, 0, 0, 1, 1, 1]), 5, seed=0)


def test_cross_val_proba_predicts_each_row_without_its_label(members_data):
    P, y = members_data
    folds = np.arange(len(y)) % 4
    oof = cross_val_proba(GreedyEnsemble(iterations=5), P, y, inner_folds=folds)
    flipped = y.copy()
    flipped[folds == 0] = (flipped[folds == 0] + 1) % 4  # every label of fold 0 changes
    again = cross_val_proba(GreedyEnsemble(iterations=5), P, flipped, inner_folds=folds)
    np.testing.assert_array_equal(oof[folds == 0], again[folds == 0])
    np.testing.assert_allclose(oof.sum(axis=1), 1.0)
