"""How sure a model is, and whether it should be: reliability bins, ECE, temperature scaling.

ferray's prediction files hold probabilities, not logits, so a temperature ``T`` acts on
log-probabilities: ``softmax(log p / T)``. For a softmax model that is exactly temperature
scaling of its logits (log p differs from the logits by a per-row constant); for an
ensemble's averaged probabilities it is the same one-parameter family. ``T > 1`` softens
over-confident probabilities, ``T < 1`` sharpens under-confident ones; the argmax, so
accuracy and F1, never changes.

Fit ``T`` on out-of-fold rows and judge it on the holdout: rows that chose the temperature
do not score it.

>>> import numpy as np
>>> apply_temperature(np.array([[0.8, 0.2]]), 1.0).round(3)
array([[0.8, 0.2]])
"""

from __future__ import annotations

import numpy as np

# One implementation for export (fits the bundle's temperature), predict (applies it) and
# the report: the numpy helpers live with the torch-free predict package.
from ferray.predict._calibration import (
    N_BINS,
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    reliability,
)

__all__ = ["reliability", "expected_calibration_error", "fit_temperature", "apply_temperature", "calibration_summary",
           "N_BINS"]


def calibration_summary(fit_y: np.ndarray | None, fit_proba: np.ndarray | None, eval_y: np.ndarray,
                        eval_proba: np.ndarray, n_bins: int = N_BINS, *, fitted_on: str = "oof",
                        evaluated_on: str = "holdout") -> dict:
    """ECE and reliability bins of ``eval_*``, before and after a temperature fitted on ``fit_*``.

    Without fit rows (``fit_y is None``) there is no temperature: only the raw calibration.
    """
    from ferray.training.metrics import log_loss

    out: dict = {"n_bins": n_bins, "evaluated_on": evaluated_on, "rows": len(eval_y),
                 "ece": expected_calibration_error(eval_y, eval_proba, n_bins),
                 "log_loss": log_loss(eval_y, eval_proba) if len(eval_y) else float("nan"),
                 "reliability": reliability(eval_y, eval_proba, n_bins), "temperature": None}
    if fit_y is not None and fit_proba is not None and len(fit_y):
        t = fit_temperature(fit_y, fit_proba)
        scaled = apply_temperature(eval_proba, t) if len(eval_y) else eval_proba
        out.update(temperature=t, fitted_on=fitted_on, fit_rows=len(fit_y),
                   ece_scaled=expected_calibration_error(eval_y, scaled, n_bins),
                   log_loss_scaled=log_loss(eval_y, scaled) if len(eval_y) else float("nan"),
                   reliability_scaled=reliability(eval_y, scaled, n_bins))
    return out
