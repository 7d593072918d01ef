"""Reports of a run or a bundle: where a model fails, how sure it is, how the search got there.

:func:`build_report` writes one offline HTML page with PNG figures and the same numbers as
JSON (``RUN/report/``; see :class:`ferray.layout.ReportLayout`). The pieces are plain
functions on numpy arrays, usable on their own:

* :func:`classification_summary`, :func:`confusion`, :func:`most_confused`,
  :func:`fold_spread`, :func:`per_au_f1`: per-class precision/recall/F1/support, macro and
  weighted F1, balanced accuracy (they match scikit-learn);
* :func:`reliability`, :func:`expected_calibration_error`, :func:`fit_temperature`,
  :func:`apply_temperature`: calibration and temperature scaling of probabilities.

:func:`evaluate_bundle` scores an exported bundle on another dataset (``ferray evaluate``):
accuracy and macro-F1 with bootstrap intervals, classes matched by name, the classes the
model lacks listed with their rows and excluded.

>>> import numpy as np
>>> from ferray.report import expected_calibration_error, fit_temperature
>>> y = np.array([0, 1, 1, 0]); p = np.array([[.9, .1], [.2, .8], [.7, .3], [.6, .4]])
>>> round(expected_calibration_error(y, p, n_bins=5), 3)
0.25
>>> build_report("runs/quickstart-20261130-120000")  # doctest: +SKIP
"""

# Exports load on first use: `ferray --help` imports this package's CLI module and must not
# pay for scikit-learn, pyarrow or matplotlib.
from typing import TYPE_CHECKING as _TYPE_CHECKING

from ferray._lazy import lazy_exports

_EXPORTS = {
    "build_report": "ferray.report._build",
    "default_report_dir": "ferray.report._build",
    "REPORT_FORMAT": "ferray.report._build",
    "classification_summary": "ferray.report._metrics",
    "confusion": "ferray.report._metrics",
    "most_confused": "ferray.report._metrics",
    "fold_spread": "ferray.report._metrics",
    "per_au_f1": "ferray.report._metrics",
    "reliability": "ferray.report._calibration",
    "expected_calibration_error": "ferray.report._calibration",
    "fit_temperature": "ferray.report._calibration",
    "apply_temperature": "ferray.report._calibration",
    "calibration_summary": "ferray.report._calibration",
    "search_history": "ferray.report._search",
    "param_importances": "ferray.report._search",
    "evaluate_bundle": "ferray.report._evaluate_bundle",
    "Evaluation": "ferray.report._evaluate_bundle",
}

__all__ = [
    "build_report",
    "default_report_dir",
    "REPORT_FORMAT",
    # classification
    "classification_summary",
    "confusion",
    "most_confused",
    "fold_spread",
    "per_au_f1",
    # calibration
    "reliability",
    "expected_calibration_error",
    "fit_temperature",
    "apply_temperature",
    "calibration_summary",
    # search history
    "search_history",
    "param_importances",
    # a bundle on another dataset
    "evaluate_bundle",
    "Evaluation",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if _TYPE_CHECKING:  # pragma: no cover - for static analysers only
    from ferray.report._build import REPORT_FORMAT, build_report, default_report_dir
    from ferray.report._calibration import (
        apply_temperature,
        calibration_summary,
        expected_calibration_error,
        fit_temperature,
        reliability,
    )
    from ferray.report._evaluate_bundle import Evaluation, evaluate_bundle
    from ferray.report._metrics import classification_summary, confusion, fold_spread, most_confused, per_au_f1
    from ferray.report._search import param_importances, search_history
