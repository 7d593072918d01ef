"""How sure a model is, and whether it should be: the report's calibration summary.

The numbers (reliability bins, ECE, temperature scaling, ``softmax(log p / T)``) come from
:mod:`ferray.metrics.calibration`, the one implementation that ``ferray export`` fits a
bundle's temperature with and ``ferray predict`` applies. Fit ``T`` on out-of-fold rows and
judge it on the holdout: rows that chose the temperature do not score it.
"""

from __future__ import annotations

import numpy as np

from ferray.metrics import (
    N_BINS,
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    log_loss,
    reliability,
)

__all__ = ["calibration_summary"]


def calibration_summary(
    fit_y: np.ndarray | None,
    fit_proba: np.ndarray | None,
    eval_y: np.ndarray,
    eval_proba: np.ndarray,
    n_bins: int = N_BINS,
    *,
    fitted_on: str = "oof",
    evaluated_on: str = "holdout",
) -> dict:
    """ECE and reliability bins of ``eval_*``, before and after a temperature fitted on ``fit_*``.

    Without fit rows (``fit_y is None``) there is no temperature: only the raw calibration.
    """
    out: dict = {
        "n_bins": n_bins,
        "evaluated_on": evaluated_on,
        "rows": len(eval_y),
        "ece": expected_calibration_error(eval_y, eval_proba, n_bins),
        "log_loss": log_loss(eval_y, eval_proba) if len(eval_y) else float("nan"),
        "reliability": reliability(eval_y, eval_proba, n_bins),
        "temperature": None,
    }
    if fit_y is not None and fit_proba is not None and len(fit_y):
        t = fit_temperature(fit_y, fit_proba)
        scaled = apply_temperature(eval_proba, t) if len(eval_y) else eval_proba
        out.update(
            temperature=t,
            fitted_on=fitted_on,
            fit_rows=len(fit_y),
            ece_scaled=expected_calibration_error(eval_y, scaled, n_bins),
            log_loss_scaled=log_loss(eval_y, scaled) if len(eval_y) else float("nan"),
            reliability_scaled=reliability(eval_y, scaled, n_bins),
        )
    return out
