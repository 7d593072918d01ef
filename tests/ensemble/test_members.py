from __future__ import annotations

import numpy as np

from ferray.ensemble import load_members, select_members
from ferray.ensemble._members import run_status

from .conftest import CLASSES


def test_members_are_the_best_finished_trials_aligned_by_row(make_run):
    run = make_run()
    layout, status = run_status(run.root)
    trials = select_members(layout, status, 3)
    assert [t["trial_id"] for t in trials] == ["t_a", "t_b", "t_c"]
    members = load_members(layout, trials)
    assert members.trial_ids == ["t_a", "t_b", "t_c"] and len(members) == 3
    assert members.class_names == CLASSES
    assert members.oof.shape == (3, len(run.cv_rows), 4)
    assert members.holdout.shape == (3, len(run.holdout_rows), 4)
    np.testing.assert_array_equal(members.rows, run.cv_rows)
    np.testing.assert_array_equal(members.labels, run.labels[run.cv_rows])
    np.testing.assert_array_equal(members.folds, run.folds)
    np.testing.assert_array_equal(members.holdout_labels, run.labels[run.holdout_rows])
    np.testing.assert_allclose(members.oof.sum(axis=2), 1.0, atol=1e-5)
    assert members.meta["k"] == 3 and members.oof_au is None
