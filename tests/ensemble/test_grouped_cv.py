"""Grouped inner folds: no face on both sides of an inner split.

The fold plan keeps a subject's images and near-duplicate copies in one outer fold; the
inner cross-validation that scores and chooses the ensemble method must keep them together
too. Here every row is copied several times and the copies share a group: label-only
inner folds put copies on both sides of a split, and a learner that memorises rows then
scores far above what it does on new faces; grouped inner folds score it as it is.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import StratifiedKFold

from ferray.data import FoldPlan
from ferray.ensemble import (
    EnsembleMethod,
    GreedyEnsemble,
    StackingEnsemble,
    cross_val_proba,
    inner_splits,
    load_members,
)
from ferray.errors import DataError

from .conftest import balanced_labels, softmax

N_CLASSES = 4


def duplicated_noise(
    n_faces: int = 120, copies: int = 4, n_members: int = 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(P, y, groups)``: ``n_faces`` rows, each ``copies`` times (one group), in a seeded order.

    The member probabilities carry no information about the labels: whatever a method
    scores above chance (1/4) on them, it scores from memory.
    """
    rng = np.random.default_rng(seed)
    y = balanced_labels(n_faces, N_CLASSES, seed)
    P = softmax(rng.normal(0.0, 2.0, (n_members, n_faces, N_CLASSES)))
    order = rng.permutation(n_faces * copies)
    face = np.repeat(np.arange(n_faces), copies)[order]
    return P[:, face], y[face], face


class Memoriser(EnsembleMethod):
    """A 1-nearest-neighbour "ensemble": each row gets the label of the closest row it was fitted on."""

    def fit(self, P, y):
        P, y = self._check_fit_input(P, y)
        self.X_, self.y_ = P.transpose(1, 0, 2).reshape(P.shape[1], -1), y
        return self

    def _combine(self, P):
        X = P.transpose(1, 0, 2).reshape(P.shape[1], -1)
        nearest = ((X[:, None, :] - self.X_[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
        return np.eye(self.n_classes_)[self.y_[nearest]]


def accuracy(y: np.ndarray, proba: np.ndarray) -> float:
    return float(np.mean(proba.argmax(axis=1) == y))


def straddling(splits, groups: np.ndarray) -> int:
    """Groups with rows on both sides of at least one split."""
    return len(set().union(*(set(groups[train]) & set(groups[test]) for train, test in splits)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grouped_inner_folds_keep_every_group_on_one_side(seed):
    P, y, groups = duplicated_noise(seed=seed)
    splits = inner_splits(y, 5, seed=seed, groups=groups)
    assert len(splits) == 5
    assert sorted(np.concatenate([te for _, te in splits]).tolist()) == list(range(len(y)))
    for train, test in splits:
        assert not set(train) & set(test)
        assert not set(groups[train]) & set(groups[test])
        # still stratified: every class in every test part, within one group's rows of even
        assert np.ptp(np.bincount(y[test], minlength=N_CLASSES)) <= 4
    assert straddling(splits, groups) == 0
    # label-only folds over the same rows split nearly every group
    assert straddling(inner_splits(y, 5, seed=seed), groups) > 0.9 * len(np.unique(groups))
    again = inner_splits(y, 5, seed=seed, groups=groups)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(splits, again))
    other = inner_splits(y, 5, seed=seed + 10, groups=groups)
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(splits, other))


def test_without_groups_or_with_single_row_groups_the_folds_are_stratified_k_fold():
    y = balanced_labels(103, N_CLASSES, seed=0)
    expected = [te for _, te in StratifiedKFold(5, shuffle=True, random_state=3).split(np.zeros((103, 1)), y)]
    for groups in (None, np.arange(103)[::-1], [f"subject_{i}" for i in range(103)]):
        got = [te for _, te in inner_splits(y, 5, seed=3, groups=groups)]
        assert all(np.array_equal(a, b) for a, b in zip(expected, got))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_memorised_rows_look_learned_with_label_only_folds_but_not_with_grouped_ones(seed):
    # The concrete cost of ignoring the groups: a memoriser on uninformative members, 120 faces x 4 copies.
    P, y, groups = duplicated_noise(seed=seed)
    label_only = accuracy(y, cross_val_proba(Memoriser(), P, y, seed=0))
    grouped = accuracy(y, cross_val_proba(Memoriser(), P, y, seed=0, groups=groups))
    new_P, new_y, _ = duplicated_noise(seed=seed + 99)
    new_faces = accuracy(new_y, Memoriser().fit(P, y).predict_proba(new_P))
    # measured over seeds 0..4 (chance 0.25): label-only 0.99-1.00, grouped 0.16-0.22, new faces 0.20-0.30
    assert label_only > 0.9
    assert grouped < 0.4 and new_faces < 0.4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_flexible_stacker_is_scored_honestly_only_with_groups(seed):
    # Twenty uninformative members, hardly regularised: a meta-learner that can fit 60 faces' noise.
    P, y, groups = duplicated_noise(n_faces=60, n_members=20, seed=seed)
    label_only = StackingEnsemble(C=1e4, seed=0).fit(P, y)
    grouped = StackingEnsemble(C=1e4, seed=0).fit(P, y, groups=groups)
    # measured for seeds 0..2 (chance 0.25): inner-CV accuracy label-only 1.00, grouped 0.17-0.27;
    # log-loss label-only 0.00, grouped 6.0-7.9
    assert label_only.inner_cv_accuracy_ > 0.9
    assert grouped.inner_cv_accuracy_ < 0.45
    assert grouped.inner_cv_score_ > label_only.inner_cv_score_ + 1.0
    # the groups change the inner splits only: the final meta-learner is the same
    np.testing.assert_allclose(grouped.coef_, label_only.coef_)
    np.testing.assert_allclose(grouped.intercept_, label_only.intercept_)


def test_grouped_folds_need_as_many_groups_as_folds():
    y = np.tile([0, 1], 6)
    groups = np.repeat([0, 1, 2], 4)
    with pytest.raises(ValueError, match=r"inner_folds is 5, but the rows form only 3 groups .*<= 3"):
        inner_splits(y, 5, seed=0, groups=groups)
    with pytest.raises(ValueError, match=r"groups has shape \(3,\), but there are 12 rows"):
        inner_splits(y, 2, seed=0, groups=[0, 1, 2])
    with pytest.raises(ValueError, match=r"groups has shape \(3,\), but there are 12 rows"):
        StackingEnsemble(inner_folds=2).fit(np.full((1, 12, 2), 0.5), y, groups=[0, 1, 2])


# -- from the run's fold plan to both inner cross-validations ---------------------------------------------


def save_plan(run, groups_of_cv_rows: np.ndarray | None) -> FoldPlan:
    """The run's ``folds.parquet``, holding the synthetic run's folds and the given groups."""
    n = len(run.labels)
    fold = np.full(n, -1, np.int8)
    fold[run.cv_rows] = run.folds
    groups = None
    if groups_of_cv_rows is not None:
        groups = np.full(n, -1, np.int64)
        groups[run.cv_rows] = groups_of_cv_rows
    plan = FoldPlan(
        fold=fold,
        ids=np.array([f"img_{i:04d}" for i in range(n)], dtype=object),
        k=run.k,
        seed=0,
        grouped=groups is not None,
        holdout="fraction=0.2",
        data_fingerprint="fp-run",
        groups=groups,
    )
    plan.save(run.layout.folds)
    return plan


def subjects_within_folds(run, size: int = 6) -> np.ndarray:
    """Groups of ``size`` cross-validation rows, each inside one outer fold (as a fold plan makes them)."""
    position = np.arange(len(run.cv_rows))
    return run.folds * 10_000 + (position // run.k) // size


def test_load_members_reads_the_groups_of_the_run_fold_plan(make_run):
    run = make_run()
    trials = [{"trial_id": t} for t in ("t_a", "t_b", "t_c")]
    assert load_members(run.layout, trials).groups is None  # no folds.parquet: label-only inner folds
    save_plan(run, None)
    assert load_members(run.layout, trials).groups is None  # a plan that grouped nothing
    groups = subjects_within_folds(run)
    save_plan(run, groups)
    members = load_members(run.layout, trials)
    np.testing.assert_array_equal(members.groups, groups)  # cv rows are sorted, as the members' rows


def test_a_fold_plan_of_other_rows_is_refused(make_run):
    run = make_run()
    plan = save_plan(run, subjects_within_folds(run))
    object.__setattr__(plan, "ids", np.array([f"other_{i}" for i in range(len(plan.ids))], dtype=object))
    plan.save(run.layout.folds)
    with pytest.raises(DataError, match=r"OOF rows do not match the fold plan .*folds\.parquet"):
        load_members(run.layout, [{"trial_id": "t_a"}])


def test_build_ensembles_scores_and_chooses_with_grouped_inner_folds(make_run):
    from ferray.ensemble import build_ensembles, fit_methods

    run = make_run()
    groups = subjects_within_folds(run)
    save_plan(run, groups)
    lines: list[str] = []
    report = build_ensembles(run.root, top=3, methods="greedy,stacking,mean", seed=4, echo=lines.append)
    assert report.summary["inner_groups"] == {
        "grouped": True,
        "groups": len(np.unique(groups)),
        "rows": len(run.cv_rows),
    }
    assert any(line.startswith("inner folds: 5, stratified by label and grouped") for line in lines)

    members = load_members(run.layout, [{"trial_id": t} for t in report.top_members])
    fits = {
        f.name: f
        for f in fit_methods(
            members, ["greedy", "stacking"], seed=4, settings={"greedy": {"seed": 4}, "stacking": {"seed": 4}}
        )
    }
    stack = StackingEnsemble(seed=4).fit(members.oof, members.labels, groups=groups)
    np.testing.assert_allclose(fits["stacking"].oof, stack.oof_proba_)
    greedy = cross_val_proba(GreedyEnsemble(seed=4), members.oof, members.labels, seed=4, groups=groups)
    np.testing.assert_allclose(fits["greedy"].oof, greedy)
    # ... and the table scores those predictions, not label-only ones
    assert report.row("stacking")["oof_log_loss"] == pytest.approx(
        float(-np.mean(np.log(np.clip(stack.oof_proba_[np.arange(len(members.labels)), members.labels], 1e-7, 1))))
    )
    label_only = StackingEnsemble(seed=4).fit(members.oof, members.labels)
    assert not np.allclose(label_only.oof_proba_, stack.oof_proba_)


def test_build_ensembles_without_plan_groups_says_the_inner_folds_are_label_only(make_run):
    from ferray.ensemble import build_ensembles

    run = make_run()
    lines: list[str] = []
    report = build_ensembles(run.root, top=2, methods="stacking", echo=lines.append)
    assert report.summary["inner_groups"] == {"grouped": False, "groups": None, "rows": len(run.cv_rows)}
    assert any("stratified by label (" in line for line in lines)
