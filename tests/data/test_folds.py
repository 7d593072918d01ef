import numpy as np
import pytest

from ferray.data import HOLDOUT, FERData, FoldPlan, plan_folds
from ferray.errors import DataError


def make_data(n=120, classes=3, subjects=None, test=0, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    splits = np.array(["train"] * (n - test) + ["test"] * test, dtype=object)
    subj = None
    if subjects:
        subj = np.array([f"s{i % subjects}" for i in rng.permutation(n)], dtype=object)
    return FERData(
        images=rng.integers(0, 255, (n, 8, 8, 1), dtype=np.uint8),
        labels=labels,
        class_names=tuple(f"c{i}" for i in range(classes)),
        ids=np.array([f"r{i}" for i in range(n)], dtype=object),
        splits=splits,
        sources=np.array(["mem"] * n, dtype=object),
        subjects=subj,
    )


@pytest.mark.parametrize("k", [2, 3, 5])
def test_out_of_fold_rows_cover_each_training_row_exactly_once(k):
    data = make_data(150, test=30)
    plan = plan_folds(data, k, seed=1)
    cv = plan.cv_index
    val = np.concatenate([plan.val_index(i) for i in range(k)])
    assert len(val) == len(cv) == 120
    assert np.array_equal(np.sort(val), cv)
    for i in range(k):
        assert not set(plan.train_index(i)) & set(plan.val_index(i))
        assert not set(plan.train_index(i)) & set(plan.holdout_index)


def test_holdout_auto_uses_the_test_split_and_none_keeps_everything():
    data = make_data(150, test=30)
    assert set(np.flatnonzero(plan_folds(data, 3).fold == HOLDOUT)) == set(range(120, 150))
    assert (plan_folds(data, 3, holdout="none").fold != HOLDOUT).all()
    frac = plan_folds(make_data(200), 3, holdout=0.2)
    assert abs((frac.fold == HOLDOUT).sum() - 40) <= 3
    assert frac.holdout == "fraction=0.2"


def test_stratified_folds_balance_classes():
    data = make_data(300, classes=3)
    plan = plan_folds(data, 5, seed=0)
    for i in range(5):
        counts = np.bincount(data.labels[plan.val_index(i)], minlength=3)
        assert counts.max() - counts.min() <= 1


def test_subjects_never_cross_folds():
    data = make_data(240, classes=3, subjects=24)
    plan = plan_folds(data, 4, seed=3)
    assert plan.grouped
    for s in np.unique(data.subjects):
        assert len(set(plan.fold[data.subjects == s])) == 1


def test_same_seed_same_plan_and_different_seed_differs(tmp_path):
    data = make_data(120)
    a, b, c = plan_folds(data, 3, seed=7), plan_folds(data, 3, seed=7), plan_folds(data, 3, seed=8)
    assert a == b
    assert not np.array_equal(a.fold, c.fold)
    loaded = FoldPlan.load(a.save(tmp_path / "folds.parquet"))
    assert loaded == a
    loaded.check_matches(data)
    with pytest.raises(DataError, match="data changed"):
        loaded.check_matches(make_data(60))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 4, "classes": 2}, "4 rows cannot be split into k = 5"),
        ({"n": 40, "classes": 1}, "single class"),
        ({"n": 12, "classes": 4}, "larger than the smallest class"),
    ],
)
def test_bad_plans_are_clear_errors(kwargs, message):
    with pytest.raises(DataError, match=message):
        plan_folds(make_data(**kwargs), 5)


def test_fewer_subjects_than_folds_and_bad_k_and_holdout():
    with pytest.raises(DataError, match="number of subjects"):
        plan_folds(make_data(60, subjects=3), 4)
    with pytest.raises(DataError, match="integer >= 2"):
        plan_folds(make_data(60), 1)
    with pytest.raises(DataError, match="holdout 'half' is not accepted"):
        plan_folds(make_data(60), 3, holdout="half")
    with pytest.raises(DataError, match="no rows in a 'test' split"):
        plan_folds(make_data(60), 3, holdout="test")
