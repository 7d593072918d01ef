"""Reports of a run or a bundle: where a model fails, how sure it is, how the search got there.

:func:`build_report` writes one offline HTML page with PNG figures and the same numbers as
JSON (``RUN/report/``; see :class:`ferray.run.layout.ReportLayout`). The pieces are plain
functions on numpy arrays, usable on their own:

* :func:`classification_summary`, :func:`confusion`, :func:`most_confused`,
  :func:`fold_spread`, :func:`per_au_f1`: per-class precision/recall/F1/support, macro and
  weighted F1, balanced accuracy (they match scikit-learn);
* :func:`calibration_summary`: ECE and reliability bins before and after a temperature.

The scores themselves (accuracy, F1, ECE, temperature scaling, bootstrap intervals) are
:mod:`ferray.metrics`'s. :func:`evaluate_bundle` scores an exported bundle on another dataset
(``ferray evaluate``; :func:`cross_dataset_scores` on arrays): accuracy and macro-F1 with
bootstrap intervals, classes matched by name, the classes the model lacks listed with their
rows and excluded.

>>> import numpy as np
>>> from ferray.report import classification_summary
>>> y = np.array([0, 1, 1, 0]); p = np.array([[.9, .1], [.2, .8], [.7, .3], [.6, .4]])
>>> classification_summary(y, p, ["a", "b"])["balanced_accuracy"]
0.75
>>> build_report("runs/quickstart-20261130-120000")  # doctest: +SKIP
"""

# Exports load on first use: `ferray --help` imports this package's CLI module and must not
# pay for scikit-learn, pyarrow or matplotlib.
from typing import TYPE_CHECKING

from ferray._lazy import lazy_exports

_EXPORTS = {
    "build_report": "ferray.report._build",
    # classification
    "classification_summary": "ferray.report._metrics",
    "confusion": "ferray.report._metrics",
    "most_confused": "ferray.report._metrics",
    "fold_spread": "ferray.report._metrics",
    "per_au_f1": "ferray.report._metrics",
    # calibration
    "calibration_summary": "ferray.report._calibration",
    # search history
    "search_history": "ferray.report._search",
    "param_importances": "ferray.report._search",
    # a bundle on another dataset
    "evaluate_bundle": "ferray.report._evaluate_bundle",
    "Evaluation": "ferray.report._evaluate_bundle",
    "cross_dataset_scores": "ferray.report._cross_dataset",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from ferray.report._build import build_report
    from ferray.report._calibration import calibration_summary
    from ferray.report._cross_dataset import cross_dataset_scores
    from ferray.report._evaluate_bundle import Evaluation, evaluate_bundle
    from ferray.report._metrics import classification_summary, confusion, fold_spread, most_confused, per_au_f1
    from ferray.report._search import param_importances, search_history
