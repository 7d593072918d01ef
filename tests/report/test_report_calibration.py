"""The report's calibration summary: a temperature fitted on one split and judged on another."""

from __future__ import annotations

import pytest
from _fer_helpers import sampled

from ferray.metrics import apply_temperature, expected_calibration_error, fit_temperature
from ferray.report import calibration_summary


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
