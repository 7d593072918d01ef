import json

import numpy as np
import pytest

from ferray.data import HOLDOUT, FERData, FoldPlan, load_source, plan_folds
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


# -- duplicate-aware folds ---------------------------------------------------------------------


def smooth(rng, size=32):
    """A smooth random pattern: near copies of it stay near in pHash, other patterns do not."""
    return np.kron(rng.integers(20, 236, (size // 4, size // 4)), np.ones((4, 4))).astype(np.uint8)


def dup_data(n_base=200, classes=3, subjects=None, test_fraction=0.0, seed=0):
    """Rows of distinct patterns plus exact copies, near copies and chains of near copies."""
    rng = np.random.default_rng(seed)
    images = [smooth(rng) for _ in range(n_base)]
    labels = list(np.arange(n_base) % classes)
    who = list(rng.integers(0, subjects or 1, n_base))
    for base in rng.choice(n_base, 40, replace=False):
        current = images[base]
        for _ in range(int(rng.integers(1, 4))):
            near = rng.random() < 0.6
            copy = (
                np.clip(current.astype(int) + rng.integers(-2, 3, current.shape), 0, 255).astype(np.uint8)
                if near
                else current.copy()
            )
            images.append(copy)
            # now and then a copy carries another label or subject, as in FER2013
            labels.append(labels[base] if rng.random() < 0.9 else int(rng.integers(classes)))
            who.append(who[base] if rng.random() < 0.9 else int(rng.integers(subjects or 1)))
            current = copy  # the next copy may chain on this one
    n = len(images)
    order = rng.permutation(n)
    images = np.stack(images)[order][..., None]
    labels = np.asarray(labels)[order]
    splits = np.where(rng.random(n) < test_fraction, "test", "train").astype(object)
    subj = np.array([f"s{i}" for i in np.asarray(who)[order]], dtype=object) if subjects else None
    return FERData(
        images=images,
        labels=labels,
        class_names=tuple(f"c{i}" for i in range(classes)),
        ids=np.array([f"r{i}" for i in range(n)], dtype=object),
        splits=splits,
        sources=np.array(["mem"] * n, dtype=object),
        subjects=subj,
    )


def brute_clusters(data, t=3):
    """Cluster label per row from all pairwise pHash distances (no multi-index, no union-find)."""
    from ferray.data._hashing import phash64

    h = phash64(data.images)
    bits = ((h[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)).astype(np.int8)
    close = (bits[:, None, :] != bits[None, :, :]).sum(axis=2) <= t
    label = np.arange(len(data))
    changed = True
    while changed:  # min-label propagation over the adjacency matrix
        new = np.where(close, label[None, :], len(data)).min(axis=1)
        changed = not np.array_equal(new, label)
        label = new
    return label, close


def assert_nothing_straddles(data, plan, clusters, fold=None):
    from _fer_layouts import straddling

    fold = plan.fold if fold is None else fold
    assert straddling(clusters, fold) == [], "a duplicate cluster straddles folds or the holdout"
    if plan.grouped:
        assert straddling(data.subjects, fold) == [], "a subject straddles folds or the holdout"


@pytest.mark.parametrize("holdout", ["none", 0.25])
@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("subjects", [None, 40])
def test_duplicate_clusters_and_subjects_never_straddle_folds_or_holdout(k, holdout, subjects):
    data = dup_data(subjects=subjects)
    clusters, _ = brute_clusters(data)
    plan = plan_folds(data, k, seed=k, holdout=holdout)
    assert plan.group_duplicates and plan.grouped == bool(subjects)
    assert_nothing_straddles(data, plan, clusters)
    sizes = np.bincount(clusters)
    assert plan.duplicate_rows == int((sizes[clusters] > 1).sum()) > 40
    assert plan.duplicate_clusters == int((sizes > 1).sum())
    assert f"{plan.duplicate_rows} rows in {plan.duplicate_clusters} clusters grouped" in plan.summary()
    assert plan.holdout_leaks == 0
    assert set(plan.fold.tolist()) == set(range(k)) | ({HOLDOUT} if holdout != "none" else set())


def test_test_split_holdout_counts_leaks_and_the_clean_mask_drops_them():
    from ferray.data import clean_holdout_mask

    data = dup_data(test_fraction=0.3, seed=1)
    clusters, close = brute_clusters(data)
    plan = plan_folds(data, 3, seed=0)
    held = plan.fold == HOLDOUT
    assert np.array_equal(held, data.splits == "test")
    # within the folds nothing straddles; the test split stays the dataset's own
    assert_nothing_straddles(data, plan, clusters[~held], plan.fold[~held])
    leaky = held & (close & ~held[None, :]).any(axis=1)
    assert plan.holdout_leaks == int(leaky.sum()) > 0
    mask = clean_holdout_mask(data, plan)
    assert np.array_equal(mask, held & ~leaky)
    assert np.array_equal(clean_holdout_mask(data, plan.fold), mask)
    assert f"{plan.holdout_leaks} holdout rows have a duplicate in the folds" in plan.summary()
    with pytest.raises(DataError, match=r"fold array has shape \(3,\) but the data has"):
        clean_holdout_mask(data, np.zeros(3))


def test_without_group_duplicates_the_plan_is_plain_stratified_and_leaks():
    data = dup_data()
    clusters, _ = brute_clusters(data)
    plain = plan_folds(data, 5, seed=0, group_duplicates=False)
    assert not plain.group_duplicates and plain.duplicate_rows == 0
    assert "duplicates" not in plain.summary()
    from _fer_layouts import straddling

    assert straddling(clusters, plain.fold), "random folds split some duplicate clusters (the leak)"


def test_grouped_plans_stay_stratified_and_seeded():
    data = dup_data(n_base=600, classes=3, subjects=None, seed=2)
    a, b, c = plan_folds(data, 5, seed=4), plan_folds(data, 5, seed=4), plan_folds(data, 5, seed=5)
    assert a == b and not np.array_equal(a.fold, c.fold)
    for i in range(5):
        counts = np.bincount(data.labels[a.val_index(i)], minlength=3)
        assert counts.max() - counts.min() <= 3
    sizes = np.bincount(a.fold)
    assert sizes.max() - sizes.min() <= 3


def test_plans_save_and_load_the_grouping_figures(tmp_path):
    import pyarrow.parquet as pq

    data = dup_data(test_fraction=0.3)
    plan = plan_folds(data, 3)
    loaded = FoldPlan.load(plan.save(tmp_path / "folds.parquet"))
    assert loaded == plan
    assert (loaded.duplicate_rows, loaded.duplicate_clusters, loaded.holdout_leaks) == (
        plan.duplicate_rows,
        plan.duplicate_clusters,
        plan.holdout_leaks,
    )
    # a plan written before duplicate grouping existed still loads
    table = pq.read_table(tmp_path / "folds.parquet")
    old = {"k": 3, "seed": 0, "grouped": False, "holdout": "test", "data_fingerprint": plan.data_fingerprint}
    pq.write_table(table.replace_schema_metadata({b"ferray_folds": json.dumps(old).encode()}), tmp_path / "old.parquet")
    legacy = FoldPlan.load(tmp_path / "old.parquet")
    assert not legacy.group_duplicates and legacy.duplicate_rows == 0 and np.array_equal(legacy.fold, plan.fold)


@pytest.mark.parametrize("holdout", ["none", 0.25, "test"])
@pytest.mark.parametrize("subjects", [None, 40])
def test_plans_keep_each_rows_group_for_later_splits(tmp_path, holdout, subjects):
    # The ensemble stage splits the OOF rows again (inner folds): it reads these groups.
    import pyarrow.parquet as pq

    data = dup_data(subjects=subjects, test_fraction=0.2 if holdout == "test" else 0.0)
    clusters, _ = brute_clusters(data)
    plan = plan_folds(data, 3, seed=1, holdout=holdout)
    assert plan.groups.shape == (len(data),) and plan.groups.dtype == np.int64
    assert (plan.groups[plan.holdout_index] == -1).all() and (plan.groups[plan.cv_index] >= 0).all()
    cv = plan.cv_index
    for g in np.unique(plan.groups[cv]):  # a group lies in one fold ...
        assert len(set(plan.fold[cv][plan.groups[cv] == g].tolist())) == 1
    for c in np.unique(clusters[cv]):  # ... and holds every duplicate cluster (and subject) it touches
        assert len(set(plan.groups[cv][clusters[cv] == c].tolist())) == 1
    if subjects:
        for s in np.unique(data.subjects[cv]):
            assert len(set(plan.groups[cv][data.subjects[cv] == s].tolist())) == 1
    loaded = FoldPlan.load(plan.save(tmp_path / "folds.parquet"))
    assert loaded == plan and np.array_equal(loaded.groups, plan.groups)
    # nothing to group: no groups stored; a plan saved before groups were stored loads without them
    plain = plan_folds(make_data(60), 3)
    assert plain.groups is None
    assert FoldPlan.load(plain.save(tmp_path / "plain.parquet")).groups is None
    table = pq.read_table(tmp_path / "folds.parquet")
    pq.write_table(table.drop(["group"]), tmp_path / "old.parquet")
    old = FoldPlan.load(tmp_path / "old.parquet")
    assert old.groups is None and np.array_equal(old.fold, plan.fold) and old != plan


def test_too_few_duplicate_groups_for_k_is_an_error():
    rng = np.random.default_rng(0)
    two = [smooth(rng), smooth(rng)]
    images = np.stack([two[i % 2] for i in range(12)])[..., None]
    data = FERData(
        images=images,
        labels=np.arange(12) % 2,
        class_names=("a", "b"),
        ids=np.array([f"r{i}" for i in range(12)], dtype=object),
        splits=np.array(["train"] * 12, dtype=object),
        sources=np.array(["mem"] * 12, dtype=object),
    )
    with pytest.raises(DataError, match=r"k = 3 is larger than the number of groups of duplicate images \(2\)"):
        plan_folds(data, 3)
    assert len(set(plan_folds(data, 3, group_duplicates=False).fold.tolist())) == 3


def test_ck_plus_layout_keeps_subjects_and_sequences_together(tmp_path):
    from _fer_layouts import scheme_folder

    scheme_folder(tmp_path, "ck+", subjects=8, test_subjects=2, frames=3)
    data = load_source(tmp_path)
    sequences = np.array([i.rsplit("_", 1)[0] for i in data.ids], dtype=object)  # .../S010_001
    for group_by_subject in (True, False):
        plan = plan_folds(data, 3, seed=0, group_by_subject=group_by_subject)
        assert_nothing_straddles(data, plan, sequences)
        assert plan.holdout_leaks == 0 and plan.holdout_index.size == 2 * 4 * 3
        # every training sequence is one 3-frame cluster of near duplicates
        assert (plan.duplicate_rows, plan.duplicate_clusters) == (6 * 4 * 3, 6 * 4)


def test_fold_config_groups_duplicates_by_default():
    from ferray.training import TrainConfig, make_fold_plan

    cfg = TrainConfig.model_validate({"folds": {"k": 2}})
    assert cfg.folds.group_duplicates is True
    data = dup_data()
    assert make_fold_plan(cfg, data).group_duplicates
    off = TrainConfig.model_validate({"folds": {"k": 2, "group_duplicates": False}})
    assert not make_fold_plan(off, data).group_duplicates


@pytest.mark.shared_data
def test_real_fer2013_csv_exact_duplicates_share_a_fold(shared_data):
    data = load_source(shared_data / "fer2013_csv_subset" / "fer2013_first1167.csv")
    clusters, _ = brute_clusters(data)
    plan = plan_folds(data, 5, seed=0, holdout=0.2)
    assert plan.duplicate_clusters >= 3
    assert_nothing_straddles(data, plan, clusters)


@pytest.mark.shared_data
def test_real_fer2013_test_split_leaks_are_counted(fer2013_subset):
    from ferray.data import clean_holdout_mask, duplicate_pairs

    data = load_source(fer2013_subset)
    plan = plan_folds(data, 3, seed=0)
    held = plan.fold == HOLDOUT
    a, b = duplicate_pairs(data)
    inside = ~held[a] & ~held[b]
    assert (plan.fold[a[inside]] == plan.fold[b[inside]]).all(), "a duplicate pair straddles two folds"
    assert plan.duplicate_rows > 500 and plan.holdout_leaks > 200
    clean = clean_holdout_mask(data, plan)
    assert plan.holdout_leaks == int(held.sum() - clean.sum())
    per_fold = np.stack([np.bincount(data.labels[plan.val_index(i)], minlength=data.num_classes) for i in range(3)])
    assert (np.ptp(per_fold, axis=0) <= 3).all(), per_fold
