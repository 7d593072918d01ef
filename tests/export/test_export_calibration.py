"""The temperature a bundle stores: fitted on the ensemble's out-of-fold rows, T = 1 with a reason elsewhere."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _export_helpers import CLASSES, make_trial

from ferray.errors import ConfigError, DataError
from ferray.export import export_bundle, fit_calibration
from ferray.export._calibrate import ensemble_calibration
from ferray.metrics import expected_calibration_error, fit_temperature


def _manifest(bundle) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def test_export_run_fits_the_temperature_on_the_ensembles_oof_rows(calibrated):
    cal = _manifest(calibrated["bundle"])["calibration"]
    entry = cal["ensemble"]
    labels, probs = calibrated["oof"]
    t = fit_temperature(labels, probs)
    assert entry["temperature"] == pytest.approx(t, rel=1e-5)
    assert entry["temperature"] > 1.5  # labels were drawn from softmax(log p / 3): over-confident probabilities
    assert entry["fitted_on"] == "out-of-fold" and entry["rows"] == len(labels)
    assert entry["file"] == str(calibrated["run"].ensemble_files.oof)
    assert entry["ece_before"] == pytest.approx(expected_calibration_error(labels, probs))
    scaled = np.exp(np.log(probs.astype(np.float64)) / t)
    scaled /= scaled.sum(axis=1, keepdims=True)
    assert entry["ece_after"] == pytest.approx(expected_calibration_error(labels, scaled), abs=1e-6)
    assert entry["ece_after"] < entry["ece_before"] and entry["log_loss_after"] < entry["log_loss_before"]
    h_labels, _ = calibrated["holdout"]
    assert entry["holdout"]["rows"] == len(h_labels)  # judged on rows that did not choose T
    assert "student" not in cal  # the run has no student
    assert cal["applies"] == "softmax(log p / T) to the graph's probs"


def test_oof_of_another_ensemble_or_classes_keeps_t_1(calibrated):
    ens = calibrated["run"].ensemble_files
    ids = calibrated["members"]
    other = ensemble_calibration(ens, method="stacking", members=ids, classes=CLASSES)
    assert (
        other["temperature"] == 1.0
        and "predictions of ensemble 'greedy', but the bundle exports 'stacking'" in other["reason"]
    )
    fewer = ensemble_calibration(ens, method="greedy", members=ids[:1], classes=CLASSES)
    assert fewer["temperature"] == 1.0 and "members" in fewer["reason"]
    renamed = ensemble_calibration(ens, method="greedy", members=ids, classes=CLASSES[::-1])
    assert renamed["temperature"] == 1.0 and "classes" in renamed["reason"]


def test_a_run_without_oof_rows_and_a_broken_oof_file(tmp_path):
    missing = ensemble_calibration(tmp_path, method="greedy", members=["a"], classes=CLASSES)
    assert missing["temperature"] == 1.0 and "oof.parquet: no out-of-fold predictions" in missing["reason"]
    (tmp_path / "oof.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match=r"oof\.parquet: cannot read predictions"):
        ensemble_calibration(tmp_path, method="greedy", members=["a"], classes=CLASSES)


def test_export_bundle_without_calibration_records_why(greedy_bundle):
    cal = _manifest(greedy_bundle["bundle"])["calibration"]
    assert cal["ensemble"] == {
        "temperature": 1.0,
        "fitted_on": None,
        "reason": "no out-of-fold predictions were given to fit a temperature on (T = 1)",
    }
    assert cal["student"]["temperature"] == 1.0 and "trained on every cross-validation row" in cal["student"]["reason"]
    assert any(line.startswith("calibration: ensemble T = 1") for line in greedy_bundle["echo"])


@pytest.mark.parametrize(
    "calibration, match",
    [
        ({"ensemble": {"temperature": 0}}, r"calibration\.ensemble\.temperature is 0, but must be a finite number > 0"),
        ({"ensemble": {"temperature": "warm"}}, r"calibration\.ensemble\.temperature is 'warm'"),
        ({"teacher": {"temperature": 2.0}}, r"unknown graph\(s\) \['teacher'\]; valid keys: ensemble, student"),
        ({"student": {"temperature": 2.0}}, "a 'student' entry, but no student is exported"),
    ],
)
def test_bad_calibration_is_refused_before_exporting(tmp_path, greedy_bundle, calibration, match):
    with pytest.raises(ConfigError, match=match):
        export_bundle(greedy_bundle["members"], tmp_path / "b", method="mean", calibration=calibration)
    assert not (tmp_path / "b").exists()


def test_fit_calibration_checks_its_rows():
    with pytest.raises(DataError, match=r"labels \(3,\) and probabilities \(2, 4\) do not match"):
        fit_calibration([0, 1, 2], np.full((2, 4), 0.25))
    with pytest.raises(DataError, match=r"labels must be class indexes in \[0, 3\]"):
        fit_calibration([0, 4], np.full((2, 4), 0.25))
    with pytest.raises(DataError, match="probabilities of 4 classes, but the bundle has 7"):
        fit_calibration([0, 1], np.full((2, 4), 0.25), n_classes=7)
    with pytest.raises(DataError, match="no rows to fit a temperature on"):
        fit_calibration([], np.zeros((0, 4)))


def test_student_with_its_own_oof_rows_is_fitted(tmp_path):
    from ferray.export._calibrate import student_calibration
    from ferray.run.layout import DistillLayout
    from ferray.run.predictions import Predictions, write_predictions

    folder = DistillLayout(make_trial(tmp_path / "distill", k=1, cv=None))
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.full(4, 0.3), size=50).astype(np.float32)
    labels = rng.integers(0, 4, 50)
    none = student_calibration(folder, classes=CLASSES)  # `ferray distill` trains on every CV row: no OOF rows
    assert none["temperature"] == 1.0 and none["fitted_on"] is None and "holdout" in none["reason"]
    write_predictions(
        Predictions(
            np.arange(50),
            [str(i) for i in range(50)],
            np.arange(50) % 2,
            labels,
            probs,
            None,
            {"class_names": CLASSES, "k": 2, "kind": "oof"},
        ),
        folder.oof,
    )
    entry = student_calibration(folder, classes=CLASSES)
    assert entry["fitted_on"] == "out-of-fold" and entry["rows"] == 50
    assert entry["temperature"] == pytest.approx(fit_temperature(labels, probs), rel=1e-5)
