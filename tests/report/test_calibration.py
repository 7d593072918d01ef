"""ECE, reliability bins and temperature scaling on constructed data."""

from __future__ import annotations

import numpy as np
import pytest

from ferray.report import (
    apply_temperature,
    calibration_summary,
    expected_calibration_error,
    fit_temperature,
    reliability,
)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def sampled(n: int, scale: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z) and the probabilities softmax(scale * z): calibrated when scale == 1."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, 5))
    true = softmax(z)
    y = (true.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return y, softmax(scale * z)


def test_ece_by_hand():
    # confidences .9 .9 .6 .6, correct 1 0 1 1; 10 bins: |.5 - .9| * 2/4 + |1 - .6| * 2/4
    y = np.array([0, 1, 0, 0])
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    assert expected_calibration_error(y, p, n_bins=10) == pytest.approx(0.4)
    bins = reliability(y, p, n_bins=10)
    assert sum(bins["count"]) == 4 and len(bins["edges"]) == 11
    filled = [(c, a, f) for c, a, f in zip(bins["count"], bins["accuracy"], bins["confidence"]) if c]
    assert filled == [(2, 1.0, pytest.approx(0.6)), (2, 0.5, pytest.approx(0.9))]
    assert bins["accuracy"][0] is None  # empty bins have no accuracy


def test_ece_is_zero_when_every_bin_is_exact():
    # confidence 0.75 and 3 of 4 right in that bin
    y = np.array([0, 0, 0, 1])
    p = np.tile([0.75, 0.25], (4, 1))
    assert expected_calibration_error(y, p) == pytest.approx(0.0)


def test_calibrated_probabilities_have_small_ece():
    y, p = sampled(20000, 1.0)
    assert expected_calibration_error(y, p) < 0.02
    y, p = sampled(20000, 2.0)  # over-confident
    assert expected_calibration_error(y, p) > 0.1


@pytest.mark.parametrize("scale", [0.5, 2.0, 3.0])
def test_temperature_recovers_the_distortion(scale):
    y, p = sampled(20000, scale, seed=1)
    t = fit_temperature(y, p)
    assert t == pytest.approx(scale, rel=0.06)
    scaled = apply_temperature(p, t)
    assert expected_calibration_error(y, scaled) < 0.02
    np.testing.assert_array_equal(scaled.argmax(1), p.argmax(1))  # accuracy never changes


def test_apply_temperature():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    np.testing.assert_allclose(apply_temperature(p, 1.0), p, atol=1e-12)
    soft = apply_temperature(p, 2.0)
    np.testing.assert_allclose(soft.sum(1), 1.0)
    np.testing.assert_allclose(soft[0], np.sqrt(p[0]) / np.sqrt(p[0]).sum())
    assert apply_temperature(p, 1e6).max() == pytest.approx(1 / 3, abs=1e-4)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature .* must be a finite number > 0"):
            apply_temperature(p, bad)


def test_fit_temperature_input_checks():
    with pytest.raises(ValueError, match="do not match"):
        fit_temperature(np.zeros(3, int), np.full((2, 2), 0.5))
    with pytest.raises(ValueError, match="0 < low < high"):
        fit_temperature(np.zeros(2, int), np.full((2, 2), 0.5), bounds=(1.0, 0.5))
    assert fit_temperature(np.zeros(0, int), np.zeros((0, 3))) == 1.0


def test_summary_fits_on_one_split_and_judges_on_another():
    y_fit, p_fit = sampled(8000, 2.5, seed=2)
    y_ev, p_ev = sampled(4000, 2.5, seed=3)
    s = calibration_summary(y_fit, p_fit, y_ev, p_ev)
    assert s["temperature"] == pytest.approx(fit_temperature(y_fit, p_fit))
    assert s["fitted_on"] == "oof" and s["evaluated_on"] == "holdout"
    assert s["fit_rows"] == 8000 and s["rows"] == 4000
    assert s["ece_scaled"] < s["ece"] and s["log_loss_scaled"] < s["log_loss"]
    assert s["ece_scaled"] == pytest.approx(expected_calibration_error(y_ev, apply_temperature(p_ev, s["temperature"])))
    raw = calibration_summary(None, None, y_ev, p_ev)
    assert raw["temperature"] is None and "ece_scaled" not in raw


def test_a_bundle_report_shows_the_temperature_the_run_report_fits(run_report, report_bundle, tmp_path):
    """``ferray export`` stores the temperature the run's report fits on the ensemble's OOF rows."""
    import json

    from ferray.report import build_report

    manifest = json.loads((report_bundle / "manifest.json").read_text())
    stored = manifest["calibration"]["ensemble"]
    run_cal = run_report["doc"]["models"]["ensemble"]["calibration"]
    assert stored["fitted_on"] == "out-of-fold" and stored["rows"] == run_cal["fit_rows"]
    assert stored["temperature"] == pytest.approx(run_cal["temperature"], rel=1e-5)
    page = build_report(report_bundle, out=tmp_path / "r")
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    assert doc["bundle"]["temperature"]["ensemble"] == stored["temperature"]
    assert doc["bundle"]["temperature"]["student"] == 1.0
    assert f"T = {stored['temperature']:.4g} fitted on {stored['rows']} out-of-fold rows" in page.read_text()
