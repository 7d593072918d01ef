"""ECE, reliability bins and temperature scaling on constructed data."""

from __future__ import annotations

import numpy as np
import pytest
from _fer_helpers import sampled

from ferray.metrics import apply_temperature, expected_calibration_error, fit_temperature, reliability
from ferray.metrics.calibration import describe_calibration, is_temperature


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


@pytest.mark.parametrize(
    "value, ok",
    [(1.0, True), (2, True), (0.0, False), (-1.0, False), (float("nan"), False), (float("inf"), False), (True, False)],
)
def test_is_temperature(value, ok):
    assert is_temperature(value) is ok


def test_describe_calibration():
    assert describe_calibration({"temperature": 1.0, "fitted_on": None, "reason": "no rows"}) == "T = 1: no rows"
    entry = {"temperature": 1.4213, "fitted_on": "out-of-fold", "rows": 300, "ece_before": 0.081, "ece_after": 0.023}
    assert describe_calibration(entry) == "T = 1.421 fitted on 300 out-of-fold rows (ECE 0.081 -> 0.023)"
