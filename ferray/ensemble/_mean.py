"""The plain average of the members' probabilities: the baseline every other method must beat."""

from __future__ import annotations

from typing import Any

import numpy as np

from ferray.ensemble._base import EnsembleMethod
from ferray.ensemble._registry import register_ensemble

__all__ = ["MeanEnsemble"]


@register_ensemble("mean")
class MeanEnsemble(EnsembleMethod):
    """``predict_proba(P) = mean_m P[m]``; ``fit`` learns nothing from the labels.

    Attributes:
        weights_: ``(n_members,)``, each ``1 / n_members``.

    >>> import numpy as np
    >>> MeanEnsemble().fit(np.array([[[1.0, 0.0]], [[0.5, 0.5]]]), [0]).predict_proba(
    ...     np.array([[[1.0, 0.0]], [[0.5, 0.5]]]))
    array([[0.75, 0.25]])
    """

    learns_from_labels = False

    def __init__(self) -> None:
        pass

    def fit(self, P: Any, y: Any) -> MeanEnsemble:
        self._check_fit_input(P, y)
        self.weights_ = np.full(self.n_members_, 1.0 / self.n_members_)
        return self

    def _combine(self, P: np.ndarray) -> np.ndarray:
        return P.mean(axis=0)

    def _learned(self) -> dict:
        return {"weights": self.weights_.tolist(), "formula": "mean_m p_m"}
