"""Soft targets from the ensemble's out-of-fold predictions, checked against the run (no Ray)."""

import json
import shutil

import numpy as np
import pytest

from ferray import ensemble
from ferray.distill import pack_targets, read_ensemble_members, read_ensemble_predictions, soften, teacher_targets
from ferray.errors import ConfigError, DataError
from ferray.run.layout import EnsembleLayout
from ferray.run.predictions import Predictions


def _oof(run, order=None, **change):
    data, plan = run.data, run.plan
    cv = plan.cv_index if order is None else order
    fields = dict(
        rows=cv,
        ids=data.ids[cv],
        folds=plan.fold[cv],
        labels=data.labels[cv],
        probs=run.teacher[cv],
        au_probs=None,
        meta={
            "class_names": list(data.class_names),
            "k": plan.k,
            "kind": "oof",
            "data_fingerprint": plan.data_fingerprint,
            "tta": [],
        },
    )
    fields.update(change)
    return Predictions(**fields)


def test_targets_follow_rows_whatever_the_file_order(tiny_run):
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(tiny_run.plan.cv_index)
    t = teacher_targets(_oof(tiny_run, shuffled), tiny_run.plan, tiny_run.data)
    np.testing.assert_array_equal(t.rows, tiny_run.plan.cv_index)
    np.testing.assert_allclose(t.probs, tiny_run.teacher[t.rows], rtol=1e-6)
    np.testing.assert_array_equal(t.labels, tiny_run.data.labels[t.rows])
    assert 0.6 < t.agreement() < 0.95  # about 80% of the smoothed rows point at the label


def test_holdout_rows_are_never_targets(tiny_run):
    plan = tiny_run.plan
    t = teacher_targets(_oof(tiny_run), plan, tiny_run.data)
    assert not np.isin(plan.holdout_index, t.rows).any()
    packed = pack_targets(len(tiny_run.data), tiny_run.data.num_classes, t.rows, t.probs, t.labels, 2.0)
    assert not packed[plan.holdout_index].any()
    c = tiny_run.data.num_classes
    np.testing.assert_allclose(packed[t.rows, :c], soften(t.probs, 2.0), rtol=1e-5)
    np.testing.assert_array_equal(packed[t.rows, c:].argmax(1), t.labels)

    # A file that slips a holdout row in is refused, not filtered.
    rows = np.concatenate([plan.cv_index, plan.holdout_index[:1]])
    bad = _oof(tiny_run, rows, folds=np.concatenate([plan.fold[plan.cv_index], [0]]))
    with pytest.raises(DataError, match="holdout row"):
        teacher_targets(bad, plan, tiny_run.data)


def test_in_fold_predictions_are_refused(tiny_run):
    plan = tiny_run.plan
    folds = plan.fold[plan.cv_index].copy()
    folds[3] = (folds[3] + 1) % plan.k
    with pytest.raises(DataError, match="which trained on it; targets must be out-of-fold"):
        teacher_targets(_oof(tiny_run, folds=folds), plan, tiny_run.data)


def test_missing_and_duplicated_rows_are_refused(tiny_run):
    plan = tiny_run.plan
    with pytest.raises(DataError, match="cross-validation rows have no prediction"):
        teacher_targets(_oof(tiny_run, plan.cv_index[1:]), plan, tiny_run.data)
    dup = plan.cv_index.copy()
    dup[1] = dup[0]
    with pytest.raises(DataError, match="appears 2 times"):
        teacher_targets(_oof(tiny_run, dup), plan, tiny_run.data)


def test_fingerprint_mismatch_is_refused(tiny_run):
    oof = _oof(tiny_run)
    oof.meta["data_fingerprint"] = "0123456789abcdef"
    with pytest.raises(DataError, match="'0123456789abcdef'.*the data changed since the sweep"):
        teacher_targets(oof, tiny_run.plan, tiny_run.data)


def test_probabilities_must_be_distributions(tiny_run):
    probs = tiny_run.teacher[tiny_run.plan.cv_index] * 2
    with pytest.raises(DataError, match="must sum to 1"):
        teacher_targets(_oof(tiny_run, probs=probs), tiny_run.plan, tiny_run.data)


def test_missing_ensemble_is_a_config_error_naming_the_command(tiny_run):
    import shutil

    shutil.rmtree(tiny_run.layout.ensemble)
    with pytest.raises(ConfigError, match=r"no ensemble .*run `ferray ensemble .*` first"):
        read_ensemble_predictions(tiny_run.layout)


def test_ensemble_members_of_each_kind_of_method(tiny_run):
    path = EnsembleLayout(tiny_run.layout.ensemble).summary
    m = read_ensemble_members(tiny_run.layout)
    # greedy gave the second member weight 0: it never runs, so it is no member at inference
    assert m.trial_ids == ("t0001",) and m.weights == {"t0001": 1.0} and m.method == "greedy"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "chosen": "mean"}))
    m = read_ensemble_members(tiny_run.layout)
    assert m.trial_ids == ("t0001", "t0002") and m.weights == {"t0001": 0.5, "t0002": 0.5}
    path.write_text(json.dumps({**doc, "chosen": "stacking", "methods": {"stacking": {"coef": [[1.0]]}}}))
    m = read_ensemble_members(tiny_run.layout)
    assert m.trial_ids == ("t0001", "t0002") and m.weights is None and m.method == "stacking"
    path.write_text(json.dumps({**doc, "methods": {"greedy": {"weights": [1.0]}}}))
    with pytest.raises(DataError, match="1 numbers for 2 members"):
        read_ensemble_members(tiny_run.layout)
    path.write_text(json.dumps({"chosen": "greedy"}))
    with pytest.raises(DataError, match="names no member trials"):
        read_ensemble_members(tiny_run.layout)


def test_what_ferray_ensemble_writes_is_what_distillation_reads(tiny_run):

    shutil.rmtree(tiny_run.layout.ensemble)
    report = ensemble.build_ensembles(tiny_run.root, top=2, methods="greedy,mean,stacking", echo=None)
    oof, hold = read_ensemble_predictions(tiny_run.layout)
    t = teacher_targets(oof, tiny_run.plan, tiny_run.data)
    np.testing.assert_array_equal(t.rows, tiny_run.plan.cv_index)
    np.testing.assert_array_equal(np.sort(hold.rows), tiny_run.plan.holdout_index)
    m = read_ensemble_members(tiny_run.layout)
    assert m.method == report.chosen and set(m.trial_ids) <= {"t0001", "t0002"}
    assert (m.weights is None) == (report.chosen not in ("greedy", "mean"))


def test_transfer_images_are_labelled_by_the_members_fold_models(tiny_run):
    from ferray.distill import label_images
    from ferray.training.augment import build_eval_transform
    from ferray.training.tta import predict_proba
    from ferray.training.weights import load_fold_models

    images = tiny_run.data.images[:5]
    members = read_ensemble_members(tiny_run.layout)
    probs = label_images(tiny_run.layout, members, images, fingerprint=tiny_run.plan.data_fingerprint)
    h, _, c = tiny_run.data.image_shape
    models = load_fold_models(tiny_run.layout.trial("t0001"))
    expected = np.mean([predict_proba(m, images, build_eval_transform(h, c), tta=["hflip"])[0] for m in models], 0)
    np.testing.assert_allclose(probs, expected, rtol=1e-4, atol=1e-6)
    with pytest.raises(DataError, match="trained on data"):
        label_images(tiny_run.layout, members, images, fingerprint="other")
