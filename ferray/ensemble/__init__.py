"""Ensembles of a sweep's trials, fitted on their out-of-fold predictions.

Estimators (scikit-learn's contract: settings in ``__init__``, ``fit(P, y)`` returns
``self``, learned state ends in ``_``) over member probabilities ``P`` of shape
``(n_members, n_rows, n_classes)``:

* :class:`GreedyEnsemble`: Caruana's ensemble selection with replacement;
* :class:`StackingEnsemble`: a logistic-regression meta-learner on log-probabilities;
* :class:`MeanEnsemble` and :class:`VoteEnsemble`: the plain average and the majority vote.

They are registered by name (:data:`ENSEMBLE_METHODS`, :func:`make_ensemble`), the names a
spec's ``ensemble.methods`` and ``ferray ensemble --method`` take. :func:`build_ensembles`
does the run-level work and writes ``RUN/ensemble/``: stacking, mean and vote combine the
``top_k`` best trials by fold mean, greedy selection draws from a wider pool
(:func:`select_pool`, ``ensemble.greedy.pool``: by default every completed trial whose
weights are on disk), so a lower-ranked trial that complements the others can join.

>>> import numpy as np
>>> from ferray.ensemble import make_ensemble
>>> P = np.array([[[0.7, 0.3], [0.4, 0.6]], [[0.6, 0.4], [0.1, 0.9]]])  # 2 members, 2 rows, 2 classes
>>> make_ensemble("mean").fit(P, [0, 1]).predict(P)
array([0, 1])
>>> report = build_ensembles("runs/quickstart-20261130-120000")  # doctest: +SKIP
"""

# Exports load on first use: `ferray --help` imports this package's CLI module, and must not
# pay for scikit-learn. Any export loads the built-in methods first, so the registry is full.
import importlib
from typing import TYPE_CHECKING

from ferray._lazy import lazy_exports

_EXPORTS = {
    # estimators
    "EnsembleMethod": "ferray.ensemble._base",
    "GreedyEnsemble": "ferray.ensemble._greedy",
    "StackingEnsemble": "ferray.ensemble._stacking",
    "MeanEnsemble": "ferray.ensemble._mean",
    "VoteEnsemble": "ferray.ensemble._vote",
    # registry
    "ENSEMBLE_METHODS": "ferray.ensemble._registry",
    "register_ensemble": "ferray.ensemble._registry",
    "make_ensemble": "ferray.ensemble._registry",
    # honest out-of-fold scores
    "cross_val_proba": "ferray.ensemble._cv",
    "inner_splits": "ferray.ensemble._cv",
    "INNER_FOLDS": "ferray.ensemble._cv",
    # a run's ensembles
    "build_ensembles": "ferray.ensemble._build",
    "EnsembleReport": "ferray.ensemble._build",
    "fit_methods": "ferray.ensemble._build",
    "CHOSEN_BY": "ferray.ensemble._build",
    "Members": "ferray.ensemble._members",
    "load_members": "ferray.ensemble._members",
    "select_members": "ferray.ensemble._members",
    "select_pool": "ferray.ensemble._members",
    "member_latency": "ferray.ensemble._members",
}

__all__ = list(_EXPORTS)


def _load_builtin_methods() -> None:
    importlib.import_module("ferray.ensemble._builtin")


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, before=_load_builtin_methods)

if TYPE_CHECKING:
    from ferray.ensemble._base import EnsembleMethod
    from ferray.ensemble._build import CHOSEN_BY, EnsembleReport, build_ensembles, fit_methods
    from ferray.ensemble._cv import INNER_FOLDS, cross_val_proba, inner_splits
    from ferray.ensemble._greedy import GreedyEnsemble
    from ferray.ensemble._mean import MeanEnsemble
    from ferray.ensemble._members import Members, load_members, member_latency, select_members, select_pool
    from ferray.ensemble._registry import ENSEMBLE_METHODS, make_ensemble, register_ensemble
    from ferray.ensemble._stacking import StackingEnsemble
    from ferray.ensemble._vote import VoteEnsemble
