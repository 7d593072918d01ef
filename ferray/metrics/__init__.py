"""Scores of a classifier's predictions, numpy only: every stage's one implementation.

Training, search, ensembles, distillation, export, predict, report and explain all score
through these functions, and ``ferray predict`` runs them with numpy alone (no torch, no
scikit-learn; :func:`fit_temperature` imports scipy when called). The numbers equal
scikit-learn's.

* :mod:`ferray.metrics.classification`: :func:`accuracy`, :func:`macro_f1`,
  :func:`balanced_accuracy`, :func:`per_class_metrics`, :func:`confusion_matrix`,
  :func:`log_loss`, :func:`au_f1`;
* :mod:`ferray.metrics.bootstrap`: seeded percentile intervals (:func:`bootstrap_metrics`)
  and paired intervals of a gain (:func:`paired_bootstrap_metrics`);
* :mod:`ferray.metrics.calibration`: :func:`expected_calibration_error`, reliability bins,
  temperature scaling (:func:`fit_temperature`, :func:`apply_temperature`).

>>> import numpy as np
>>> from ferray.metrics import accuracy, bootstrap_metrics, expected_calibration_error
>>> y = np.array([0, 1, 1, 0]); p = np.array([[.9, .1], [.2, .8], [.7, .3], [.6, .4]])
>>> accuracy(y, p), round(expected_calibration_error(y, p, n_bins=5), 3)
(0.75, 0.25)
>>> bootstrap_metrics(y, p, n_boot=200)["accuracy"].value
0.75
"""

from typing import TYPE_CHECKING

from ferray._lazy import lazy_exports

_EXPORTS = {
    # classification
    "accuracy": "ferray.metrics.classification",
    "macro_f1": "ferray.metrics.classification",
    "balanced_accuracy": "ferray.metrics.classification",
    "per_class_metrics": "ferray.metrics.classification",
    "confusion_matrix": "ferray.metrics.classification",
    "log_loss": "ferray.metrics.classification",
    "au_f1": "ferray.metrics.classification",
    "to_labels": "ferray.metrics.classification",
    # bootstrap intervals
    "Interval": "ferray.metrics.bootstrap",
    "bootstrap_metrics": "ferray.metrics.bootstrap",
    "bootstrap_ci": "ferray.metrics.bootstrap",
    "paired_bootstrap_metrics": "ferray.metrics.bootstrap",
    "paired_bootstrap": "ferray.metrics.bootstrap",
    # calibration
    "expected_calibration_error": "ferray.metrics.calibration",
    "reliability": "ferray.metrics.calibration",
    "fit_temperature": "ferray.metrics.calibration",
    "apply_temperature": "ferray.metrics.calibration",
    "N_BINS": "ferray.metrics.calibration",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from ferray.metrics.bootstrap import (
        Interval,
        bootstrap_ci,
        bootstrap_metrics,
        paired_bootstrap,
        paired_bootstrap_metrics,
    )
    from ferray.metrics.calibration import (
        N_BINS,
        apply_temperature,
        expected_calibration_error,
        fit_temperature,
        reliability,
    )
    from ferray.metrics.classification import (
        accuracy,
        au_f1,
        balanced_accuracy,
        confusion_matrix,
        log_loss,
        macro_f1,
        per_class_metrics,
        to_labels,
    )
